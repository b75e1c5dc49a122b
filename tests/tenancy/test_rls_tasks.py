"""Celery tasks run in a declared row-level-security scope: a tenant task in its tenant's, sweeps in the system's.

The in-process tests call the task object itself (the same `ScopedTask.__call__` a worker runs) and look at what
raw SQL sees from inside it; the worker test queues through Redis to a real worker process.
"""
from __future__ import annotations

import inspect

import pytest
from celery.exceptions import TimeoutError as CeleryTimeout
from django.apps import apps
from django.db import connection

from galleries.models import Gallery, GalleryHealth
from galleries.tasks import compute_gallery_health
from shitu_platform.celery import app as celery_app
from shitu_platform.tenancy.models import TenantOwnedModel
from shitu_platform.tenancy.rls import TaskTenantMismatch

# Tasks that work over every tenant's rows. Adding one is a reviewed decision; every other task of ours is a
# tenant task and runs in the scope of the tenant it is queued for.
SYSTEM_TASKS = {
    "shitu_platform.ping",  # no rows at all: the worker round trip
    "galleries.resume_stale_imports",  # takeovers of any tenant's dead import
    "training.resume_stale_finetunes",  # takeovers of any tenant's dead fine-tune
    "galleries.backfill_default_model",  # embeds every gallery with a new platform default
    "galleries.prune_pgvector_indexes",  # drops indexes of galleries that are gone
    "galleries.sweep_orphan_objects",  # stored objects no tenant's row references
    "recognition.sweep_orphan_photos",
    "recognition.purge_expired_recognitions",  # each tenant's retention
}


def _our_tasks() -> dict[str, object]:
    celery_app.loader.import_default_modules()  # autodiscovery, as a worker does at start
    return {name: task for name, task in celery_app.tasks.items() if not name.startswith("celery.")}


def _gallery_tenants_seen() -> set[int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT DISTINCT tenant_id FROM galleries_gallery")
        return {row[0] for row in cursor.fetchall()}


class SeenBySql:
    """At each query of the task's own (after the one that finds its tenant): which galleries raw SQL sees."""

    def __init__(self) -> None:
        self.queries: list[set[int]] = []
        self._inside = False

    def __call__(self, execute, sql, params, many, context):
        if not self._inside:
            self._inside = True
            try:
                self.queries.append(_gallery_tenants_seen())
            finally:
                self._inside = False
        return execute(sql, params, many, context)

    def after_lookup(self) -> set[frozenset[int]]:
        assert len(self.queries) > 1, "the task ran no query of its own"
        return {frozenset(seen) for seen in self.queries[1:]}


@pytest.fixture()
def two_galleries(tenant_a, tenant_b) -> tuple[Gallery, Gallery]:
    return (Gallery.objects.create(tenant=tenant_a.tenant, name="Acme shelf"),
            Gallery.objects.create(tenant=tenant_b.tenant, name="Bolt shelf"))


def test_every_task_declares_its_scope_and_the_system_tasks_are_the_written_list():
    tasks = _our_tasks()
    assert {"recognition.run_recognition", "galleries.run_import", "training.run_finetune"} <= set(tasks)
    undeclared = {name for name, task in tasks.items() if task.db_scope not in ("tenant", "system")}
    assert undeclared == set()
    assert {name for name, task in tasks.items() if task.db_scope == "system"} == SYSTEM_TASKS
    for name, task in tasks.items():
        if task.db_scope != "tenant":
            continue
        model_label, argument = task.tenant_row  # where a message queued without a tenant finds it
        assert issubclass(apps.get_model(model_label), TenantOwnedModel), name
        assert {argument, "tenant_id"} <= set(inspect.signature(task.run).parameters), name


@pytest.mark.django_db
def test_a_tenant_task_sees_only_its_tenants_rows_and_the_scope_is_restored_after(tenant_a, two_galleries):
    gallery_a, _ = two_galleries
    spy = SeenBySql()
    with connection.execute_wrapper(spy):
        result = compute_gallery_health(tenant_a.tenant.pk, gallery_a.pk)
    assert "skipped" not in result
    assert spy.after_lookup() == {frozenset({tenant_a.tenant.pk})}
    assert _gallery_tenants_seen() == {g.tenant_id for g in two_galleries}  # back in the system scope


@pytest.mark.django_db
def test_a_tenant_task_handed_another_tenants_row_refuses_it_and_restores_the_scope(tenant_a, two_galleries):
    _, gallery_b = two_galleries
    with pytest.raises(TaskTenantMismatch, match="queued for tenant"):
        compute_gallery_health(tenant_a.tenant.pk, gallery_b.pk)
    assert not GalleryHealth.objects.for_tenant(gallery_b.tenant).filter(gallery=gallery_b).exists()
    assert _gallery_tenants_seen() == {g.tenant_id for g in two_galleries}


@pytest.mark.django_db
def test_a_message_queued_without_a_tenant_runs_in_its_rows_tenant(tenant_b, two_galleries):
    """Messages queued before tasks carried their tenant (and takeovers) find it from the row they were handed."""
    _, gallery_b = two_galleries
    from galleries.tasks import build_local_feature_pack

    spy = SeenBySql()
    with connection.execute_wrapper(spy):
        build_local_feature_pack(gallery_b.pk)
    assert spy.after_lookup() == {frozenset({tenant_b.tenant.pk})}


def test_a_worker_runs_tenant_tasks_in_their_tenant_and_refuses_another_tenants_row(celery_worker, tenant_a, two_galleries):
    gallery_a, gallery_b = two_galleries
    mine = compute_gallery_health.apply_async(args=[tenant_a.tenant.pk, gallery_a.pk], queue="default")
    assert "skipped" not in mine.get(timeout=60)
    assert GalleryHealth.objects.for_tenant(tenant_a.tenant).filter(gallery=gallery_a).exists()

    theirs = compute_gallery_health.apply_async(args=[tenant_a.tenant.pk, gallery_b.pk], queue="default")
    with pytest.raises(Exception) as failure:
        theirs.get(timeout=60)
    assert not isinstance(failure.value, CeleryTimeout)
    assert "queued for tenant" in str(failure.value)
    assert not GalleryHealth.objects.for_tenant(gallery_b.tenant).filter(gallery=gallery_b).exists()


@pytest.fixture()
def published():
    """The task messages our code publishes to Redis, as (task name, queued tenant); purged after."""
    from celery.signals import before_task_publish

    sent: list[tuple[str, object]] = []

    def record(sender=None, body=None, **_: object) -> None:
        _args, kwargs, _embed = body
        sent.append((sender, kwargs.get("tenant_id")))

    before_task_publish.connect(record, weak=False)
    try:
        yield sent
    finally:
        before_task_publish.disconnect(record)
        celery_app.control.purge()  # no worker ran here: nothing queued may reach a later test's worker


@pytest.mark.django_db
def test_every_enqueue_of_a_tenant_task_carries_its_tenant(tenant_b, published, django_capture_on_commit_callbacks):
    """The worker checks the row it is handed against the queued tenant (test above): that check needs a tenant."""
    import io
    import zipfile

    from galleries.imports import import_start
    from galleries.local_feature_pack import local_feature_pack_rebuild_later
    from galleries.models import ReferenceImage
    from galleries.services import gallery_create, product_create, reference_image_box_set, reference_image_upload
    from tests.support.images import product_photo
    from training.services import finetune_start

    gallery = gallery_create(tenant=tenant_b.tenant, name="Bolt shelf")
    products = [product_create(gallery=gallery, label=label) for label in ("cola", "lime")]
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("cola/1.jpg", product_photo((200, 30, 30)))
        bundle.writestr("labels.txt", "cola/1.jpg\tcola\n")
    with django_capture_on_commit_callbacks(execute=True):
        uploaded = [reference_image_upload(product=product, data=product_photo(colour)).reference_image
                    for product, colour in zip(products, [(200, 30, 30), (30, 200, 30)])]
        import_start(gallery=gallery, archive=archive.getvalue(), archive_name="g.zip")
    ReferenceImage.objects.for_tenant(tenant_b.tenant).filter(pk__in=[r.pk for r in uploaded]).update(
        status=ReferenceImage.Status.READY)
    for image in uploaded:
        image.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        reference_image_box_set(reference_image=uploaded[0], bbox=[1, 1, 50, 50])
        local_feature_pack_rebuild_later(gallery=gallery)
        finetune_start(gallery=gallery, mode="full")
    tasks = {name for name, _ in published}
    assert {"galleries.embed_reference_images", "galleries.run_import", "galleries.reembed_reference_image",
            "galleries.build_local_feature_pack", "training.run_finetune"} <= tasks, published
    tenant_tasks = {name for name, task in _our_tasks().items() if task.db_scope == "tenant"}
    assert [(name, tenant) for name, tenant in published if name in tenant_tasks and tenant != tenant_b.tenant.pk] == []


@pytest.mark.django_db
def test_a_takeover_is_queued_with_the_tenant_of_the_job_it_takes_over(tenant_b):
    from galleries.imports import stale_imports
    from galleries.models import ImportJob

    gallery = Gallery.objects.create(tenant=tenant_b.tenant, name="Bolt shelf")
    job = ImportJob.objects.create(tenant=tenant_b.tenant, gallery=gallery, archive_key="k", archive_name="g.zip",
                                   status=ImportJob.Status.RUNNING, run_token="gone@host|1|x")
    stale = stale_imports(this_worker="alive@host", live_workers=lambda: {"alive@host"})
    assert [(s.job_id, s.tenant_id) for s in stale] == [(job.pk, tenant_b.tenant.pk)]
