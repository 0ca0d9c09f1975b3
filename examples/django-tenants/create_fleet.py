"""Creates the example fleet with django-tenants itself: the public tenant
(public.example.test) and three tenants, each schema built and migrated by
django-tenants. Run: python manage.py shell < create_fleet.py"""
from customers.models import Client, Domain

public = Client(schema_name="public", name="public")
public.save()
Domain(domain="public.example.test", tenant=public, is_primary=True).save()
for name in ["acme", "globex", "initech"]:
    tenant = Client(schema_name=name, name=name)
    tenant.save()
    Domain(domain=f"{name}.example.test", tenant=tenant, is_primary=True).save()
