"""A minimal django-tenants project: one schema per tenant, the public
schema for the tenant and domain tables. The database comes from
DATABASE_URL (postgres://user@host:port/dbname), as tenantgate's does."""
import os
from urllib.parse import parse_qs, unquote, urlparse

url = urlparse(os.environ["DATABASE_URL"])
query = parse_qs(url.query)

SECRET_KEY = "example-only-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "fleet.urls"
PUBLIC_SCHEMA_URLCONF = "fleet.public_urls"
USE_TZ = True

DATABASES = {
    "default": {
        "ENGINE": "django_tenants.postgresql_backend",
        "NAME": url.path.lstrip("/"),
        "USER": unquote(url.username or ""),
        "PASSWORD": unquote(url.password or ""),
        "HOST": url.hostname,
        "PORT": url.port or 5432,
        "OPTIONS": {"sslmode": query.get("sslmode", ["prefer"])[0]},
    }
}
DATABASE_ROUTERS = ("django_tenants.routers.TenantSyncRouter",)

SHARED_APPS = ["django_tenants", "customers", "django.contrib.contenttypes"]
TENANT_APPS = ["shop"]
INSTALLED_APPS = list(SHARED_APPS) + [a for a in TENANT_APPS if a not in SHARED_APPS]
TENANT_MODEL = "customers.Client"
TENANT_DOMAIN_MODEL = "customers.Domain"

MIDDLEWARE = [
    "fleet.request_log.log_requests",
    "django_tenants.middleware.main.TenantMainMiddleware",
]
TEMPLATES = []
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGGING = {
    "version": 1,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["stderr"], "level": "WARNING"},
}
