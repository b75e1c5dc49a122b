"""Clean-up sweeps: expired recognitions go with their photos; unreferenced objects go, referenced ones stay; beat
runs each sweep by a task name the workers know."""
from datetime import timedelta

import pytest
from django.utils import timezone

from galleries.models import Gallery
from galleries.sweeps import reference_image_objects_sweep
from recognition.models import Recognition
from recognition.sweeps import recognition_photos_sweep, recognitions_purge_expired
from shitu_platform.celery import app
from shitu_platform.object_store import object_store
from shitu_platform.tenancy.models import Tenant

pytestmark = pytest.mark.django_db


def _recognition(world, key: str, age_days: int) -> Recognition:
    gallery, _ = Gallery.unscoped.get_or_create(tenant=world.tenant, name="g")
    object_store().put(key, b"photo")
    recognition = Recognition(tenant=world.tenant, gallery=gallery, image_key=key, image_width=1, image_height=1)
    recognition.save()
    Recognition.unscoped.filter(pk=recognition.pk).update(created_at=timezone.now() - timedelta(days=age_days))
    return recognition


def test_purge_follows_each_tenants_retention(tenant_a, tenant_b):
    Tenant.objects.filter(pk=tenant_a.tenant.pk).update(recognition_retention_days=7)
    old_a = _recognition(tenant_a, f"tenants/{tenant_a.tenant.pk}/recognitions/old", 10)
    new_a = _recognition(tenant_a, f"tenants/{tenant_a.tenant.pk}/recognitions/new", 1)
    old_b = _recognition(tenant_b, f"tenants/{tenant_b.tenant.pk}/recognitions/old", 10)  # B keeps 90 days
    assert recognitions_purge_expired() == 1
    assert set(Recognition.unscoped.values_list("pk", flat=True)) == {new_a.pk, old_b.pk}
    assert not object_store().exists(old_a.image_key) and object_store().exists(new_a.image_key)


@pytest.mark.slow
def test_orphan_sweep_removes_only_unreferenced_data(tenant_a, monkeypatch):
    monkeypatch.setattr("shitu_platform.sweeps.ORPHAN_GRACE", timedelta(seconds=-60))
    kept = _recognition(tenant_a, f"tenants/{tenant_a.tenant.pk}/recognitions/kept", 0)
    orphan = f"tenants/{tenant_a.tenant.pk}/galleries/1/images/deadbeef"
    index = f"tenants/{tenant_a.tenant.pk}/galleries/1/index/model.faiss"
    orphan_photo = f"tenants/{tenant_a.tenant.pk}/recognitions/2026-01-01/gone"
    for key in (orphan, index, orphan_photo):
        object_store().put(key, b"x")
    assert reference_image_objects_sweep() >= 1
    assert not object_store().exists(orphan) and object_store().exists(orphan_photo)  # each app sweeps its own
    assert recognition_photos_sweep() >= 1
    assert not object_store().exists(orphan_photo)
    assert object_store().exists(kept.image_key) and object_store().exists(index)


def test_every_beat_entry_names_a_registered_task():
    app.loader.import_default_modules()  # what a worker does at start: every app's tasks.py
    scheduled = {entry["task"] for entry in app.conf.beat_schedule.values()}
    assert {"recognition.purge_expired_recognitions", "recognition.sweep_orphan_photos",
            "galleries.sweep_orphan_objects"} <= scheduled
    assert scheduled - set(app.tasks) == set()
