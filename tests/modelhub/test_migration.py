"""Moving ModelVersion and ActiveModel from training to modelhub loses no row: the tables stay, Django's state moves,
and the content types (with the permissions granted on them) follow."""
from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from galleries.models import Gallery
from modelhub.models import ActiveModel, ModelVersion
from training.models import FineTuneJob

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TRAINING_BEFORE = ("training", "0003_unscoped_default_manager")


def _migrate(targets: list[tuple[str, str | None]]) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    return executor


def test_rows_written_before_the_move_are_read_by_modelhub_after_it(tenant_a):
    executor = _migrate([TRAINING_BEFORE, ("modelhub", None)])
    old_apps = executor.loader.project_state(TRAINING_BEFORE).apps
    old_version = old_apps.get_model("training", "ModelVersion")
    old_active = old_apps.get_model("training", "ActiveModel")
    old_job = old_apps.get_model("training", "FineTuneJob")
    gallery = Gallery.objects.create(tenant=tenant_a.tenant, name="shelf")  # galleries' migrations stay applied
    base = old_version.objects.create(tenant_id=tenant_a.tenant.pk, kind="extractor", key="ft-before@1",
                                      storage_prefix="tenants/1/models/ft-before_at_1")
    child = old_version.objects.create(tenant_id=tenant_a.tenant.pk, kind="extractor", key="ft-before@2", parent=base)
    old_active.unscoped.create(tenant_id=tenant_a.tenant.pk, extractor=child, previous_extractor=base)
    job = old_job.unscoped.create(tenant_id=tenant_a.tenant.pk, gallery_id=gallery.pk, state="promoted", base_model=base,
                                 result_model=child)
    change_permission = Permission.objects.get(content_type__app_label="training", codename="change_modelversion")

    _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())

    moved = ModelVersion.objects.get(key="ft-before@2")
    assert moved.parent.key == "ft-before@1" and moved.tenant_id == tenant_a.tenant.pk
    active = ActiveModel.objects.for_tenant(tenant_a.tenant).get()
    assert (active.extractor, active.previous_extractor) == (moved, moved.parent)
    finished = FineTuneJob.objects.for_tenant(tenant_a.tenant).get(pk=job.pk)
    assert (finished.base_model.key, finished.result_model.key) == ("ft-before@1", "ft-before@2")
    assert ModelVersion._meta.db_table == "training_modelversion"
    granted = Permission.objects.get(pk=change_permission.pk)  # the same row, now on modelhub's content type
    assert granted.content_type == ContentType.objects.get_for_model(ModelVersion)
    assert granted.content_type.app_label == "modelhub"
