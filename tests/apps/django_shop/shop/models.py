"""A small shop whose fields cover what Django's migrations create on SQLite
and on PostgreSQL: identity keys, a UUID key, choices with a CHECK, slugs
(LIKE indexes on PostgreSQL), every scalar field type, a tree, a one-to-one,
many-to-many tables (automatic and explicit) and a cycle of foreign keys."""
import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


class Category(models.Model):
    # BigAutoField (DEFAULT_AUTO_FIELD); a tree through a self-reference.
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=100, unique=True)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )

    def __str__(self):
        return self.name


class Tag(models.Model):
    name = models.CharField(max_length=50, unique=True)


class Product(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=200)  # db_index: a varchar_pattern_ops index on PG
    description = models.TextField(blank=True)
    active = models.BooleanField(default=True)
    stock = models.IntegerField(default=0)
    views = models.BigIntegerField(default=0)
    rating = models.PositiveSmallIntegerField(null=True, blank=True)
    price = models.DecimalField(max_digits=12, decimal_places=2)
    weight = models.FloatField(null=True, blank=True)
    released = models.DateField(null=True, blank=True)
    available_from = models.TimeField(null=True, blank=True)
    shelf_life = models.DurationField(null=True, blank=True)
    attrs = models.JSONField(default=dict, blank=True)
    category = models.ForeignKey(
        Category, null=True, blank=True, on_delete=models.SET_NULL, related_name="products"
    )
    tags = models.ManyToManyField(Tag, blank=True, related_name="products")


class Customer(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    name = models.CharField(max_length=120)
    email = models.EmailField(blank=True)
    joined = models.DateTimeField()
    birthday = models.DateField(null=True, blank=True)
    last_ip = models.GenericIPAddressField(null=True, blank=True)
    loyalty_points = models.BigIntegerField(default=0)
    prefs = models.JSONField(null=True, blank=True)


class Order(models.Model):
    class Status(models.TextChoices):
        NEW = "new", "New"
        PAID = "paid", "Paid"
        SHIPPED = "shipped", "Shipped"
        CANCELLED = "cancelled", "Cancelled"

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="orders")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.NEW)
    placed = models.DateTimeField()
    ship_by = models.DateField(null=True, blank=True)
    total = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    note = models.TextField(blank=True)
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    products = models.ManyToManyField(Product, through="OrderLine", related_name="orders")

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["new", "paid", "shipped", "cancelled"]),
                name="shop_order_status_valid",
            ),
        ]
        indexes = [models.Index(fields=["status", "-placed"], name="shop_order_status_placed")]


class OrderLine(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    product = models.ForeignKey(Product, on_delete=models.PROTECT)
    quantity = models.PositiveIntegerField(default=1)
    unit_price = models.DecimalField(max_digits=12, decimal_places=2)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["order", "product"], name="shop_orderline_once"),
        ]


# A cycle of foreign keys: each warehouse has a manager, who works in a
# warehouse. makemigrations creates one table, then the other, then adds the
# closing foreign key.
class Warehouse(models.Model):
    code = models.CharField(max_length=8, unique=True)
    manager = models.ForeignKey(
        "Employee", null=True, blank=True, on_delete=models.SET_NULL, related_name="managed"
    )


class Employee(models.Model):
    name = models.CharField(max_length=100)
    warehouse = models.ForeignKey(
        Warehouse, null=True, blank=True, on_delete=models.SET_NULL, related_name="staff"
    )
    shift_start = models.TimeField()
