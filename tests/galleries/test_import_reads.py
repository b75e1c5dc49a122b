"""An import embeds the images it has just read from the archive without reading them back from storage; a resumed
import (rows stored by a run that died, still pending) does too. Counted on a real filesystem store."""
import pytest

from galleries import imports, services
from galleries.imports import import_run, import_start
from galleries.models import Embedding, Gallery, ImportJob, ReferenceImage
from shitu_platform.object_store import object_store
from shitu_platform.storage.filesystem import FilesystemObjectStore
from tests.galleries.test_imports import labelled_zip

pytestmark = pytest.mark.django_db


class CountingStore(FilesystemObjectStore):
    """The configured filesystem store, counting the reads of each key."""

    def __init__(self, store: FilesystemObjectStore) -> None:
        self.__dict__.update(store.__dict__)
        self.reads: list[str] = []

    def get(self, key: str) -> bytes:
        self.reads.append(key)
        return super().get(key)


@pytest.fixture()
def counting_store(monkeypatch):
    store = object_store()
    if not isinstance(store, FilesystemObjectStore):
        pytest.skip("the suite's store is not the filesystem store")
    counting = CountingStore(store)
    for module in (imports, services):
        monkeypatch.setattr(module, "object_store", lambda: counting)
    return counting


def _image_reads(store: CountingStore) -> list[str]:
    return [key for key in store.reads if "/images/" in key]


def test_import_embeds_from_the_archive_bytes(tenant_a, counting_store):
    gallery = Gallery.objects.create(tenant=tenant_a.tenant, name="Imported")
    job = import_start(gallery=gallery, archive=labelled_zip(3, 3), archive_name="g.zip")
    job = import_run(job_id=job.pk)
    assert job.status == ImportJob.Status.DONE and job.imported == 9 and job.failed == 0
    images = ReferenceImage.objects.for_tenant(tenant_a.tenant).filter(gallery=gallery)
    assert images.count() == 9 and not images.exclude(status=ReferenceImage.Status.READY).exists()
    assert Embedding.objects.for_tenant(tenant_a.tenant).filter(gallery=gallery).count() == 9
    assert _image_reads(counting_store) == []  # only the archive was read
    assert counting_store.reads.count(job.archive_key) == 1


def test_resumed_import_embeds_pending_rows_without_reading_them_back(tenant_a, counting_store):
    gallery = Gallery.objects.create(tenant=tenant_a.tenant, name="Resumed")
    job = import_start(gallery=gallery, archive=labelled_zip(2, 2), archive_name="g.zip")
    archive = imports._open_archive(object_store().get(job.archive_key))
    first = archive.rows()[0]
    # a run that died after storing its first row, before embedding it
    stored = services.reference_image_upload(product=imports._product_for(gallery, first),
                                             data=archive.read_image(first.image_path), import_job=job)
    assert stored.reference_image.status == ReferenceImage.Status.PENDING
    counting_store.reads.clear()
    job = import_run(job_id=job.pk)
    assert job.status == ImportJob.Status.DONE and job.imported == 4
    assert ReferenceImage.objects.for_tenant(tenant_a.tenant).get(pk=stored.reference_image.pk).status == "ready"
    assert _image_reads(counting_store) == []


def test_embedding_without_bytes_at_hand_still_reads_storage(tenant_a, counting_store):
    gallery = Gallery.objects.create(tenant=tenant_a.tenant, name="Uploaded")
    job = ImportJob.objects.create(tenant=tenant_a.tenant, gallery=gallery, archive_key="k/none.zip", status="done")
    archive = imports._open_archive(labelled_zip(1, 1))
    row = archive.rows()[0]
    image = services.reference_image_upload(product=imports._product_for(gallery, row),
                                            data=archive.read_image(row.image_path), import_job=job).reference_image
    outcome = services.reference_images_embed(reference_image_ids=[image.pk])
    assert outcome.ready == 1 and _image_reads(counting_store) == [image.object_key]
