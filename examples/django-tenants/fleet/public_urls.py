"""The public site (the public schema's own domain)."""
from django.http import HttpResponse
from django.urls import path


def home(request):
    return HttpResponse("public site\n", content_type="text/plain")


urlpatterns = [path("", home)]
