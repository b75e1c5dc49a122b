"""The staff admin: branded, every platform model registered and browsable (lists, search, filters, change pages with
links between rows), a Membership add form that has a tenant, and reference-image pictures through the staff door."""
from __future__ import annotations

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from shitu_platform.tenancy.models import Membership
from tests.security.conftest import A_MARKER, B_MARKER, make_tenant_objects, staff_client

pytestmark = pytest.mark.django_db

PLATFORM_APPS = ("tenancy", "modelhub", "galleries", "training")


def platform_models() -> list[type]:
    return [model for label in PLATFORM_APPS for model in apps.get_app_config(label).get_models()]


@pytest.fixture()
def a_objects(tenant_a):
    return make_tenant_objects(tenant_a, A_MARKER)


@pytest.fixture()
def b_objects(tenant_b):
    return make_tenant_objects(tenant_b, B_MARKER)


@pytest.fixture()
def superuser_client() -> Client:
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("root", password="staff-password-1"))
    return client


def _admin_url(model: type, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def test_admin_is_branded(superuser_client):
    page = superuser_client.get("/admin/").content.decode()
    assert "<title>Tenants, galleries, recognitions and models | ShiTu Platform staff</title>" in page
    assert "ShiTu Platform staff" in page and "Django administration" not in page


def test_every_platform_model_is_registered():
    missing = [model._meta.label for model in platform_models() if not admin.site.is_registered(model)]
    assert not missing, f"not in the staff admin: {missing}"


@pytest.mark.slow
def test_every_list_search_and_change_page_renders(superuser_client, a_objects, b_objects):
    problems = []
    for model in platform_models():
        listing = superuser_client.get(_admin_url(model, "changelist"))
        searched = superuser_client.get(_admin_url(model, "changelist"), {"q": A_MARKER})
        checks = [("list", listing), ("search", searched)]
        if any(field.name == "tenant" for field in model._meta.fields):
            checks.append(("tenant filter", superuser_client.get(_admin_url(model, "changelist"),
                                                                 {"tenant__id__exact": a_objects.tenant.pk})))
        for name, response in checks:
            if response.status_code != 200:
                problems.append(f"{model._meta.label} {name}: {response.status_code}")
        row = a_objects.of(model) or (a_objects.tenant if model._meta.model_name == "tenant" else None)
        if row is not None:
            change = superuser_client.get(_admin_url(model, "change", row.pk))
            if change.status_code != 200:
                problems.append(f"{model._meta.label} change page: {change.status_code}")
    assert not problems, "\n".join(problems)


def test_rows_link_to_their_tenant_gallery_and_product(superuser_client, a_objects):
    page = superuser_client.get(_admin_url(type(a_objects.reference_image), "change", a_objects.reference_image.pk)).content.decode()
    assert _admin_url(type(a_objects.product), "change", a_objects.product.pk) in page
    assert _admin_url(type(a_objects.gallery), "change", a_objects.gallery.pk) in page
    assert _admin_url(type(a_objects.tenant), "change", a_objects.tenant.pk) in page
    gallery_page = superuser_client.get(_admin_url(type(a_objects.gallery), "change", a_objects.gallery.pk)).content.decode()
    assert f"{_admin_url(type(a_objects.product), 'changelist')}?gallery__id__exact={a_objects.gallery.pk}" in gallery_page
    products = superuser_client.get(_admin_url(type(a_objects.product), "changelist"),
                                    {"gallery__id__exact": a_objects.gallery.pk}).content.decode()
    assert a_objects.product.label in products


def test_fine_tune_job_admin_shows_the_verdict(superuser_client, a_objects):
    job = a_objects.fine_tune_job
    job.state, job.metrics_before, job.metrics_after = "ready", {"mAP": 0.8}, {"mAP": 0.7}
    job.save()
    page = superuser_client.get(_admin_url(type(job), "changelist")).content.decode()
    assert "0.800 → 0.700" in page and "not better" in page


def test_staff_read_platform_rows_but_do_not_edit_them(superuser_client, a_objects):
    gallery = a_objects.gallery
    page = superuser_client.get(_admin_url(type(gallery), "change", gallery.pk)).content.decode()
    assert 'name="name"' not in page  # a view, not a form: galleries change through their services
    assert superuser_client.get(_admin_url(type(gallery), "add")).status_code == 403
    assert superuser_client.post(_admin_url(type(gallery), "delete", gallery.pk), {"post": "yes"}).status_code == 403
    gallery.refresh_from_db()


def test_membership_add_form_has_a_tenant_and_creates_the_membership(superuser_client, tenant_a):
    form = superuser_client.get(_admin_url(Membership, "add")).content.decode()
    assert 'name="tenant"' in form and tenant_a.tenant.name in form
    newcomer = get_user_model().objects.create_user("newcomer", password="x-password-123")
    response = superuser_client.post(_admin_url(Membership, "add"),
                                     {"tenant": tenant_a.tenant.pk, "user": newcomer.pk, "role": "member"})
    assert response.status_code == 302, response.content[:2000]
    assert Membership.objects.for_tenant(tenant_a.tenant).get(user=newcomer).role == "member"

    again = superuser_client.post(_admin_url(Membership, "add"),
                                  {"tenant": tenant_a.tenant.pk, "user": newcomer.pk, "role": "admin"})
    assert again.status_code == 200 and "already a member" in again.content.decode()
    assert Membership.objects.for_tenant(tenant_a.tenant).filter(user=newcomer).count() == 1


def test_membership_add_form_offers_only_the_staff_members_tenants(tenant_a, tenant_b):
    client = staff_client(tenant_a, ["add_membership", "view_membership"])
    form = client.get(_admin_url(Membership, "add")).content.decode()
    assert tenant_a.tenant.name in form and tenant_b.tenant.name not in form
    outsider = get_user_model().objects.create_user("outsider", password="x-password-123")
    response = client.post(_admin_url(Membership, "add"), {"tenant": tenant_b.tenant.pk, "user": outsider.pk, "role": "owner"})
    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    assert not Membership.objects.for_tenant(tenant_b.tenant).filter(user=outsider).exists()


def test_reference_image_picture_goes_through_the_staff_door(a_objects, b_objects):
    client = staff_client(a_objects.world, ["view_referenceimage"])
    model = type(a_objects.reference_image)
    own = client.get(reverse("admin:galleries_referenceimage_picture", args=[a_objects.reference_image.pk]))
    assert own.status_code == 200 and own.content[:2] == b"\xff\xd8"
    foreign = client.get(reverse("admin:galleries_referenceimage_picture", args=[b_objects.reference_image.pk]))
    assert foreign.status_code == 404
    listing = client.get(_admin_url(model, "changelist")).content.decode()
    assert reverse("admin:galleries_referenceimage_picture", args=[a_objects.reference_image.pk]) in listing
