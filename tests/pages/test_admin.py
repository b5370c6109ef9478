"""The admin shows every model of the runs app, on its own or inline (webapp/runs/admin.py)."""

from django.apps import apps
from django.contrib import admin
from django.test import Client


def test_every_runs_model_has_an_admin_list_that_opens(django_user_model, db):
    root = django_user_model.objects.create_superuser("root", password="root-password-1")
    client = Client()
    client.force_login(root)
    models = [m for m in apps.get_app_config("runs").get_models() if m._meta.auto_created is False]
    inline = {i.model for a in admin.site._registry.values() for i in a.inlines}
    missing = [m.__name__ for m in models if not admin.site.is_registered(m) and m not in inline]
    assert missing == []
    for model in filter(admin.site.is_registered, models):
        url = f"/admin/runs/{model._meta.model_name}/"
        assert client.get(url).status_code == 200, url
