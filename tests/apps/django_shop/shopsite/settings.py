"""Settings of the litevault test shop: one SQLite database (`default`, the
source of `litevault export`) and one PostgreSQL database (`pg`, the target),
both given by the environment."""
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "litevault-test-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "shop",
]

ROOT_URLCONF = "shopsite.urls"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("SHOP_SQLITE", str(BASE_DIR / "shop.sqlite3")),
    },
    "pg": {
        "ENGINE": "django.db.backends.postgresql",
        # A Unix-socket folder or 127.0.0.1; trust authentication, no password.
        "HOST": os.environ.get("SHOP_PG_HOST", "127.0.0.1"),
        "PORT": os.environ.get("SHOP_PG_PORT", "5432"),
        "NAME": os.environ.get("SHOP_PG_DB", "shop"),
        "USER": os.environ.get("SHOP_PG_USER", "postgres"),
    },
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

USE_TZ = True
TIME_ZONE = "Europe/Paris"
LANGUAGE_CODE = "en-us"
USE_I18N = False

# Hashing speed is not what the test is about.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
