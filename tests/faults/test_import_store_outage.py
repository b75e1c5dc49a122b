"""Starting a gallery import while object storage is away: the archive is stored first, so a failed store leaves no
job row (and nothing queued) behind; once storage answers again, the same call stores the archive and queues one job.

The store is the project's real S3 backend, built from settings as in production, pointed at a loopback port where
nothing listens (the fault); the suite's own store stands for storage that is back."""
from __future__ import annotations

import io
import zipfile

import pytest
from PIL import Image

from galleries import imports
from galleries.models import Gallery, ImportJob
from shitu_platform.embedded import free_port
from shitu_platform.object_store import object_store
from shitu_platform.storage import S3ObjectStore, StorageUnavailable

pytestmark = pytest.mark.django_db


def _archive() -> bytes:
    photo = io.BytesIO()
    Image.new("RGB", (40, 40), (200, 30, 30)).save(photo, "JPEG")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("red/1.jpg", photo.getvalue())
        archive.writestr("labels.txt", "red/1.jpg\tred product\n")
    return buffer.getvalue()


@pytest.fixture
def storage_outage(settings):
    """Switches the platform's object store to S3 on a dead endpoint; calling the result brings the suite's store back."""
    healthy = settings.OBJECT_STORE
    settings.OBJECT_STORE = {"STORAGE_BACKEND": "s3", "S3_ENDPOINT": f"127.0.0.1:{free_port()}", "S3_ACCESS_KEY": "testing",
                             "S3_SECRET_KEY": "testing", "S3_BUCKET": "import-outage", "S3_REGION": "us-east-1"}
    object_store.cache_clear()

    def recover() -> None:
        settings.OBJECT_STORE = healthy
        object_store.cache_clear()

    try:
        yield recover
    finally:
        object_store.cache_clear()  # the next caller builds the suite's own store again


def test_a_failed_archive_store_leaves_no_queued_job(tenant_a, storage_outage, django_capture_on_commit_callbacks):
    assert isinstance(object_store(), S3ObjectStore)
    gallery = Gallery(tenant=tenant_a.tenant, name="shelf")
    gallery.save()
    archive = _archive()

    with django_capture_on_commit_callbacks() as queued:
        with pytest.raises(StorageUnavailable):
            imports.import_start(gallery=gallery, archive=archive, archive_name="g.zip")
    assert not ImportJob.objects.for_tenant(tenant_a.tenant).exists(), "a job row was written without its archive"
    assert queued == [], "an import was queued without its archive"

    storage_outage()
    with django_capture_on_commit_callbacks() as queued:
        job = imports.import_start(gallery=gallery, archive=archive, archive_name="g.zip")
    assert len(queued) == 1
    stored = ImportJob.objects.for_tenant(tenant_a.tenant).get()
    assert stored.pk == job.pk and stored.status == ImportJob.Status.QUEUED
    assert stored.archive_key.startswith(f"tenants/{tenant_a.tenant.pk}/imports/")
    assert object_store().get(stored.archive_key) == archive
