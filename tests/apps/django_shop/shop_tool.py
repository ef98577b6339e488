#!/usr/bin/env python3
"""What the litevault test does with the shop, through Django's ORM.

    shop_tool.py fill N     rows on the `default` (SQLite) database, deterministic
    shop_tool.py dump DB    every field of every row of every model, a line each
    shop_tool.py write DB   new rows, also in tables whose keys come from sequences
    shop_tool.py check DB   foreign keys resolve, the CHECK constraint holds

DB is a DATABASES alias: `default` or `pg`. Exits non-zero on any failure.
"""
import datetime as dt
import decimal
import json
import os
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shopsite.settings")

import django  # noqa: E402

django.setup()

from django.apps import apps  # noqa: E402
from django.contrib.auth.hashers import make_password  # noqa: E402
from django.contrib.auth.models import Group, Permission, User  # noqa: E402
from django.core import serializers  # noqa: E402
from django.db import IntegrityError, connections, transaction  # noqa: E402
from django.db.migrations.recorder import MigrationRecorder  # noqa: E402
from django.db.models import Max  # noqa: E402

from shop.models import (  # noqa: E402
    Category,
    Customer,
    Employee,
    Order,
    OrderLine,
    Product,
    Tag,
    Warehouse,
)

UTC = dt.timezone.utc
NS = uuid.UUID("6ba7b811-9dad-11d1-80b4-00c04fd430c8")

# The decimal stored with float noise: Django's SQLite converter reads it back
# as Decimal("387.28") (15 significant digits, then the field's 2 decimals).
NOISY_PRICE = "387.28000000000003"


def customer_id(i):
    return uuid.uuid5(NS, f"customer-{i}")


def fill(n):
    db = "default"
    with transaction.atomic(using=db):
        staff = Group.objects.using(db).create(name="staff")
        perms = list(
            Permission.objects.using(db)
            .filter(content_type__app_label="shop", codename__startswith="change_")
            .order_by("pk")
        )
        staff.permissions.add(*perms)
        joined0 = dt.datetime(2023, 1, 1, 8, 0, 0, 1, tzinfo=UTC)
        users = []
        for i, (username, first, last) in enumerate(
            [
                ("admin", "Ada", "Lovelace"),
                ("zoë", "Zoë", "Ørsted-Ñúñez"),
                ("li", "李", "小龙"),
                ("empty", "", ""),
            ]
        ):
            u = User(
                username=username,
                first_name=first,
                last_name=last,
                email="" if not first else f"{username}@example.org",
                is_staff=i < 2,
                is_superuser=i == 0,
                date_joined=joined0 + dt.timedelta(days=i, microseconds=123456 * i),
                last_login=None if i == 3 else dt.datetime(2024, 6, 30, 23, 59, 59, 999999, tzinfo=UTC),
            )
            u.password = make_password(f"pw-{i}", salt=f"salt{i:08d}")
            u.save(using=db)
            users.append(u)
        users[1].groups.add(staff)
        users[2].user_permissions.add(*perms[:2])

        # A tree three levels deep.
        root = Category.objects.using(db).create(name="Électronique", slug="electronique")
        cats = [root]
        for i, name in enumerate(["Téléphones", "Ordinateurs", "日本の家電"]):
            c = Category.objects.using(db).create(name=name, slug=f"cat-{i}", parent=root)
            cats.append(c)
            cats.append(
                Category.objects.using(db).create(name=f"{name} › accessoires", slug=f"cat-{i}-acc", parent=c)
            )

        tags = [
            Tag.objects.using(db).create(name=name)
            for name in ["promo", "nouveau", "日本語", "", "emoji 🎉", "quote'\"\\"]
        ]
        # A gap at the top: the next tag id is past a deleted one.
        Tag.objects.using(db).create(name="deleted").delete()

        durations = [
            dt.timedelta(days=30),
            dt.timedelta(microseconds=-1),
            dt.timedelta(days=-1, seconds=3600, microseconds=1),
            dt.timedelta(0),
            None,
            dt.timedelta(days=3650, hours=23, minutes=59, seconds=59, microseconds=999999),
        ]
        prices = ["0.00", "19.99", "-0.01", "99999999.99", "5.00", "1234.50", "0.10"]
        weights = [0.1, None, 1e-300, 1.7976931348623157e308, -2.5, 3.0, 1 / 3]
        products = []
        for i in range(n):
            p = Product.objects.using(db).create(
                name=["Crème brûlée 🍮", "Ελληνικά", "plain", "", "tab\there", "new\nline"][i % 6] + f" #{i}",
                slug=f"product-{i}",
                description="" if i % 4 == 0 else "Ünïcödé — “quoted” ‘text’ " * (i % 3 + 1),
                active=i % 5 != 0,
                stock=[-2147483648, 2147483647, 0, -1, 42][i % 5],
                views=[9223372036854775807, -9223372036854775808, 0, 10**15 + i][i % 4],
                rating=None if i % 7 == 0 else [0, 5, 32767][i % 3],
                price=decimal.Decimal(prices[i % len(prices)]),
                weight=weights[i % len(weights)],
                released=None if i % 6 == 0 else dt.date(2020, 2, 29) + dt.timedelta(days=37 * i),
                available_from=[dt.time(0, 0), dt.time(23, 59, 59, 999999), dt.time(12, 30, 0, 500), None][i % 4],
                shelf_life=durations[i % len(durations)],
                attrs=(
                    {}
                    if i % 5 == 0
                    else {
                        "size": ["S", "M", "L"][i % 3],
                        "ñ": [1, 2.5, None, True, "x"],
                        "nested": {"z": 1, "a": {"deep": [i, -i]}},
                        "big": 12345678901234567890,
                    }
                ),
                category=None if i % 4 == 3 else cats[i % len(cats)],
            )
            for j, t in enumerate(tags):
                if (i + j) % 3 == 0:
                    p.tags.add(t)
            products.append(p)

        customers = []
        ips = ["192.0.2.1", "2001:db8::1", None, "::ffff:198.51.100.7", "10.0.0.255", "fe80::1ff:fe23:4567:890a"]
        for i in range(max(4, n // 5)):
            c = Customer.objects.using(db).create(
                id=customer_id(i),
                user=users[i] if i < len(users) else None,
                name=["Renée Ætherton", "Søren Kierkegaard", "Мария", ""][i % 4] + (f" {i}" if i >= 4 else ""),
                email="" if i % 3 == 2 else f"c{i}@example.org",
                joined=dt.datetime(2001, 9, 9, 1, 46, 40, i * 1001 % 1000000, tzinfo=UTC) + dt.timedelta(hours=i),
                birthday=None if i % 2 else dt.date(1, 1, 1) + dt.timedelta(days=i * 104729 % 3_000_000),
                last_ip=ips[i % len(ips)],
                loyalty_points=[0, -9223372036854775808, 9223372036854775807, 7][i % 4],
                prefs=None if i % 3 == 0 else {"lang": ["fr", "ja", "de"][i % 3], "newsletter": i % 2 == 0},
            )
            customers.append(c)

        statuses = [s for s, _ in Order.Status.choices]
        for i in range(n):
            o = Order.objects.using(db).create(
                customer=customers[i % len(customers)],
                status=statuses[i % len(statuses)],
                placed=dt.datetime(2024, 2, 29, 13, 45, 10, 123456, tzinfo=UTC) + dt.timedelta(minutes=97 * i, microseconds=i),
                ship_by=None if i % 3 else dt.date(2024, 3, 1) + dt.timedelta(days=i),
                note="" if i % 2 else f"commande n° {i} — livrer à l’accueil",
                client_ip=ips[(i + 1) % len(ips)],
            )
            total = decimal.Decimal("0")
            for k in range(1 + i % 3):
                p = products[(i * 7 + k * 3) % len(products)]
                qty = 1 + (i + k) % 4
                OrderLine.objects.using(db).create(order=o, product=p, quantity=qty, unit_price=p.price)
                total += p.price * qty
            o.total = total
            o.save(using=db, update_fields=["total"])

        # The cycle: warehouses' managers work in warehouses.
        w1 = Warehouse.objects.using(db).create(code="PAR-1")
        w2 = Warehouse.objects.using(db).create(code="東京")
        e1 = Employee.objects.using(db).create(name="Jeanne", warehouse=w1, shift_start=dt.time(6, 0))
        e2 = Employee.objects.using(db).create(name="健", warehouse=w2, shift_start=dt.time(22, 30, 0, 1))
        Employee.objects.using(db).create(name="floating", warehouse=None, shift_start=dt.time(9, 0))
        w1.manager = e2  # crosswise, on purpose
        w2.manager = e1
        w1.save(using=db)
        w2.save(using=db)

        # Float noise, as a float computation (or another tool) leaves it:
        # a REAL that Django reads back as Decimal("387.28").
        with connections[db].cursor() as cur:
            cur.execute(
                f"UPDATE shop_product SET price = {NOISY_PRICE} WHERE id = %s", [products[0].pk]
            )
    p = Product.objects.using(db).get(pk=products[0].pk)
    assert p.price == decimal.Decimal("387.28"), p.price
    print(f"filled {n}")


def plain(v):
    """JSON for what the python serializer leaves as Python objects."""
    if isinstance(v, decimal.Decimal):
        return str(v)  # keeps the exponent: 5.00 and 5 differ
    if isinstance(v, (dt.datetime, dt.date, dt.time)):
        return v.isoformat()  # keeps microseconds and the offset
    if isinstance(v, (uuid.UUID, dt.timedelta)):
        return str(v)
    raise TypeError(f"{type(v)}: {v!r}")


def every_model():
    yield "migrations.Migration", MigrationRecorder.Migration
    for m in sorted(apps.get_models(include_auto_created=True), key=lambda m: m._meta.label):
        yield m._meta.label, m


def dump(db):
    """One line per field of every row, `LABEL PK FIELD VALUE`, VALUE as
    canonical JSON (sorted keys: jsonb reorders object keys); models by
    label, rows by key."""
    for label, model in every_model():
        rows = list(model._default_manager.using(db).order_by("pk"))
        rows.sort(key=lambda o: o.pk)
        m2m = {f.name for f in model._meta.many_to_many}
        for o in serializers.serialize("python", rows):
            pk = json.dumps(o["pk"], default=plain)
            for name, value in sorted(o["fields"].items()):
                if name in m2m:  # related keys come in no particular order
                    value = sorted(value)
                value = json.dumps(value, default=plain, sort_keys=True, ensure_ascii=False)
                print(f"{label} {pk} {name} {value}")


def write(db):
    """New rows through the ORM: keys from sequences must be past the loaded ones."""
    before = {
        m._meta.label: m._default_manager.using(db).aggregate(m=Max("pk"))["m"]
        for _, m in every_model()
        if m._meta.pk.get_internal_type() in ("AutoField", "BigAutoField")
    }
    new = []
    with transaction.atomic(using=db):
        parent = Category.objects.using(db).get(slug="electronique")
        c = Category.objects.using(db).create(name="Nouveautés ✨", slug="nouveautes", parent=parent)
        t = Tag.objects.using(db).create(name="written")
        p = Product.objects.using(db).create(
            name="Écran 4K",
            slug="ecran-4k",
            price=decimal.Decimal("399.90"),
            shelf_life=dt.timedelta(days=-2, microseconds=5),
            attrs={"ports": ["HDMI", "DP"]},
            category=c,
            available_from=dt.time(8, 15, 0, 250000),
        )
        p.tags.add(t)  # one at a time: the through rows' keys in a known order
        p.tags.add(Tag.objects.using(db).get(name="promo"))
        u = User(username="writer", first_name="Wrïter", date_joined=dt.datetime(2025, 1, 1, tzinfo=UTC))
        u.password = make_password("pw-writer", salt="saltwriter")
        u.save(using=db)
        u.groups.add(Group.objects.using(db).get(name="staff"))
        cu = Customer.objects.using(db).create(
            id=customer_id(10**6),
            user=u,
            name="Nouveau client",
            joined=dt.datetime(2025, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
            last_ip="2001:db8:85a3::8a2e:370:7334",
            prefs={"lang": "fr"},
        )
        o = Order.objects.using(db).create(
            customer=cu, status="paid", placed=dt.datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=UTC), total=decimal.Decimal("399.90")
        )
        OrderLine.objects.using(db).create(order=o, product=p, quantity=1, unit_price=p.price)
        w = Warehouse.objects.using(db).create(code="NEW")
        e = Employee.objects.using(db).create(name="Nina", warehouse=w, shift_start=dt.time(7, 0))
        w.manager = e
        w.save(using=db)
        # The CHECK constraint of the status choices is still there.
        try:
            with transaction.atomic(using=db):
                Order.objects.using(db).filter(pk=o.pk).update(status="lost")
            raise SystemExit("the status CHECK constraint let 'lost' in")
        except IntegrityError:
            pass
    for obj in [c, t, p, u, o, w, e]:
        new.append((obj._meta.label, obj.pk))
    bad = []
    for label, pk in new:
        prev = before.get(label)
        print(f"{label} {pk} (max before {prev})")
        if prev is not None and pk <= prev:
            bad.append(label)
    for label, model in every_model():
        if model._meta.auto_created and label in before:
            n = model._default_manager.using(db).filter(pk__gt=before[label] or 0).count()
            print(f"{label} +{n} (max before {before[label]})")
    if bad:
        raise SystemExit(f"new keys not past the loaded ones in {bad}")
    print("write ok")


def check(db):
    """Every foreign key resolves (the load may have bypassed them) and the
    status CHECK holds; through the ORM."""
    problems = []
    for label, model in every_model():
        for f in model._meta.concrete_fields:
            if not f.is_relation:
                continue
            target = f.related_model._default_manager.using(db).values(f.target_field.attname)
            orphans = (
                model._default_manager.using(db)
                .exclude(**{f"{f.attname}__isnull": True})
                .exclude(**{f"{f.attname}__in": target})
                .count()
            )
            if orphans:
                problems.append(f"{label}.{f.name}: {orphans} row(s) point nowhere")
    # Lookups by value: the stored form must be the one Django queries with
    # (on SQLite: UUIDs as 32 hex digits, durations as microseconds).
    for c in Customer.objects.using(db).all()[:25]:
        if not Customer.objects.using(db).filter(pk=c.pk).exists():
            problems.append(f"shop.Customer {c.pk}: not found by its UUID")
    for p in Product.objects.using(db).exclude(shelf_life=None)[:25]:
        if not Product.objects.using(db).filter(pk=p.pk, shelf_life=p.shelf_life).exists():
            problems.append(f"shop.Product {p.pk}: not found by its shelf_life {p.shelf_life}")
    statuses = [s for s, _ in Order.Status.choices]
    if Order.objects.using(db).exclude(status__in=statuses).exists():
        problems.append("shop.Order.status outside its choices")
    for p in problems:
        print(p)
    if problems:
        raise SystemExit(1)
    print("check ok")


def main(argv):
    if len(argv) != 2 or argv[0] not in ("fill", "dump", "write", "check"):
        raise SystemExit(__doc__)
    cmd, arg = argv
    if cmd == "fill":
        fill(int(arg))
    else:
        if arg not in connections.databases:
            raise SystemExit(f"no database {arg!r}: one of {list(connections.databases)}")
        {"dump": dump, "write": write, "check": check}[cmd](arg)


if __name__ == "__main__":
    main(sys.argv[1:])
