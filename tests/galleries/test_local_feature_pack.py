"""Per-gallery packs of reference local features: the format refuses what it did not write, a cold process reads a
gallery's candidates in one storage request (and images added after the build one by one), a real worker repacks a
gallery after uploads (debounced), and `manage.py shitu_local_features` packs existing galleries.

Storage reads are counted by wrapping the real object store's methods: the code under test runs unchanged."""
from __future__ import annotations

import json
import os
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command

from galleries.local_feature_pack import (
    LocalFeaturePackError,
    local_feature_pack_build,
    local_feature_pack_key,
    local_feature_pack_load,
    pack_decode,
    pack_encode,
)
from galleries.local_features import (
    local_features_cache_clear,
    local_features_for_embeddings,
    local_features_store,
)
from galleries.models import Embedding, Gallery, Product, ReferenceImage
from galleries.services import gallery_version_bump, reference_image_object_key
from recognition.engine.local_features import LocalFeatures
from shitu_platform.object_store import object_store

MODEL = "test-extractor@1"


def random_features(rng, count: int) -> LocalFeatures:
    keypoints = rng.uniform(0, 300, (count, 2))
    descriptors = rng.integers(0, 200, (count, 128), dtype=np.uint8)
    return LocalFeatures(keypoints, descriptors, (320, 240), 0.75)


def textured_crop(rng) -> np.ndarray:
    """Blocky noise: SIFT finds hundreds of corners in it, like the print on a package."""
    return rng.integers(0, 256, (60, 60, 3), dtype=np.uint8).repeat(4, axis=0).repeat(4, axis=1)


def add_images(gallery: Gallery, count: int, *, seed: int) -> list[int]:
    """Ready reference images with an embedding each and real RootSIFT features stored as the worker stores them."""
    rng = np.random.default_rng(seed)
    product = Product.unscoped.filter(gallery=gallery).first() or Product.objects.create(
        tenant=gallery.tenant, gallery=gallery, label="item")
    embedding_ids = []
    for number in range(count):
        checksum = f"{seed:08x}{number:056x}"
        image = ReferenceImage.objects.create(
            tenant=gallery.tenant, gallery=gallery, product=product, checksum=checksum, size_bytes=1, status="ready",
            object_key=reference_image_object_key(gallery=gallery, checksum=checksum))
        vector = rng.standard_normal(512).astype(np.float32)
        embedding = Embedding.objects.create(tenant=gallery.tenant, gallery=gallery, reference_image=image,
                                             model_key=MODEL, vector=vector / np.linalg.norm(vector))
        local_features_store(image=image, crop=textured_crop(rng))
        assert image.local_features_key, "the crop should have keypoints"
        embedding_ids.append(embedding.pk)
    gallery_version_bump(gallery_id=gallery.pk)
    return embedding_ids


def features_read_one_by_one(embedding_ids: list[int]) -> dict[int, LocalFeatures]:
    rows = Embedding.unscoped.filter(pk__in=embedding_ids).values_list("pk", "reference_image__local_features_key")
    return {pk: LocalFeatures.from_bytes(object_store().get(key)) for pk, key in rows}


@pytest.fixture()
def storage_reads(monkeypatch):
    """Every get/open of the process' real object store, by key (a get that opens the file counts once)."""
    store = object_store()
    reads: list[str] = []
    inside = []
    for name in ("get", "open"):
        real = getattr(store, name)

        def counted(key, _real=real):
            if not inside:
                reads.append(key)
            inside.append(key)
            try:
                return _real(key)
            finally:
                inside.pop()

        monkeypatch.setattr(store, name, counted)
    yield reads
    local_features_cache_clear()


def test_a_pack_round_trips_and_refuses_damaged_or_foreign_blobs():
    rng = np.random.default_rng(1)
    features = {image_id: random_features(rng, count) for image_id, count in ((7, 30), (3, 1), (12, 500))}
    blob = pack_encode(gallery_id=5, index_version=9, blobs=[(i, f.to_bytes()) for i, f in features.items()])
    pack = pack_decode(blob, gallery_id=5)
    assert pack.header.index_version == 9 and pack.header.image_ids == {7, 3, 12}
    assert dict(pack.features()) == features
    assert dict(pack_decode(pack_encode(gallery_id=5, index_version=0, blobs=[]), gallery_id=5).features()) == {}

    with pytest.raises(LocalFeaturePackError, match="belongs to gallery 5"):
        pack_decode(blob, gallery_id=6)  # another gallery's pack is never served for this one
    for cut in [0, 3, 11, 12, 40, len(blob) // 2, len(blob) - 1]:
        with pytest.raises(LocalFeaturePackError):
            pack_decode(blob[:cut], gallery_id=5)
    with pytest.raises(LocalFeaturePackError, match="after its body"):
        pack_decode(blob + b"\0", gallery_id=5)
    with pytest.raises(LocalFeaturePackError, match="magic"):
        pack_decode(b"SHLX" + blob[4:], gallery_id=5)
    flipped = bytearray(blob)
    flipped[-100] ^= 0x40  # a descriptor byte: still parses as features, so only the checksum can tell
    with pytest.raises(LocalFeaturePackError, match="checksum"):
        pack_decode(bytes(flipped), gallery_id=5)

    def with_header(**changes) -> bytes:
        length = struct.unpack(">Q", blob[4:12])[0]
        header = json.loads(blob[12 : 12 + length]) | changes
        raw = json.dumps(header).encode()
        return b"SHLP" + struct.pack(">Q", len(raw)) + raw + blob[12 + length :]

    rows = json.loads(blob[12 : 12 + struct.unpack(">Q", blob[4:12])[0]])["rows"]
    for bad in [{"format": 2}, {"index_version": -1}, {"gallery_id": True}, {"rows": "all"},
                {"rows": rows[:-1]}, {"rows": [rows[1], rows[0], rows[2]]}, {"rows": [[7, 0, 1]] + rows[1:]},
                {"rows": [rows[0], [7, *rows[1][1:]], rows[2]]}, {"body_length": 1}]:
        with pytest.raises(LocalFeaturePackError):
            pack_decode(with_header(**bad), gallery_id=5)
    # a blob inside that is not local features (its checksum matching) refuses the pack, not just that image
    junk = pack_encode(gallery_id=5, index_version=1, blobs=[(1, b"not features at all")])
    with pytest.raises(LocalFeaturePackError, match="not local features"):
        pack_decode(junk, gallery_id=5).features()
    assert zlib.crc32(b"") == 0


@pytest.mark.slow
def test_a_cold_process_reads_a_current_pack_once_and_only_newer_images_one_by_one(tenant_a, tenant_b, storage_reads):
    gallery = Gallery.objects.create(tenant=tenant_a.tenant, name="Packed")
    ids = add_images(gallery, 20, seed=1)
    built = local_feature_pack_build(gallery)
    gallery.refresh_from_db()
    assert built is not None and built.images == 20 and built.index_version == gallery.index_version
    expected = features_read_one_by_one(ids)

    local_features_cache_clear()
    storage_reads.clear()
    assert local_features_for_embeddings(tenant=tenant_a.tenant, embedding_ids=ids) == expected
    assert storage_reads == [built.key]  # one request for 20 candidates

    local_features_cache_clear()
    storage_reads.clear()
    first = local_features_for_embeddings(tenant=tenant_a.tenant, embedding_ids=ids[:8])
    assert first == {pk: expected[pk] for pk in ids[:8]} and storage_reads == [built.key]
    # the pack is kept in this process: other candidates of the gallery are decoded from it, not read again
    assert local_features_for_embeddings(tenant=tenant_a.tenant, embedding_ids=ids) == expected
    assert storage_reads == [built.key]
    assert local_features_for_embeddings(tenant=tenant_a.tenant, embedding_ids=ids) == expected
    assert storage_reads == [built.key]  # warm: nothing
    assert local_features_for_embeddings(tenant=tenant_b.tenant, embedding_ids=ids) == {}  # another tenant's ids

    newer = add_images(gallery, 3, seed=2)  # added after the build
    expected |= features_read_one_by_one(newer)
    local_features_cache_clear()
    storage_reads.clear()
    assert local_features_for_embeddings(tenant=tenant_a.tenant, embedding_ids=ids + newer) == expected
    assert storage_reads[0] == built.key and len(storage_reads) == 4
    assert sorted(storage_reads[1:]) == sorted(k for k in Embedding.unscoped.filter(pk__in=newer)
                                               .values_list("reference_image__local_features_key", flat=True))

    # the same process after a rebuild that holds the new images: nothing more to read, until the LRU is cleared
    rebuilt = local_feature_pack_build(gallery)
    assert rebuilt.images == 23
    storage_reads.clear()
    assert local_features_for_embeddings(tenant=tenant_a.tenant, embedding_ids=ids + newer) == expected
    assert storage_reads == []
    local_features_cache_clear()
    assert local_features_for_embeddings(tenant=tenant_a.tenant, embedding_ids=ids + newer) == expected
    assert storage_reads == [built.key]

    # a damaged pack is not used: every candidate is read on its own, with the same answer
    object_store().put(built.key, object_store().get(built.key)[:-10])
    assert local_feature_pack_load(tenant_id=tenant_a.tenant.pk, gallery_id=gallery.pk) is None
    local_features_cache_clear()
    storage_reads.clear()
    assert local_features_for_embeddings(tenant=tenant_a.tenant, embedding_ids=ids + newer) == expected
    assert len(storage_reads) == 1 + 23


def test_a_pack_larger_than_the_features_cache_is_neither_loaded_nor_built(tenant_a, settings, storage_reads):
    gallery = Gallery.objects.create(tenant=tenant_a.tenant, name="Large")
    ids = add_images(gallery, 4, seed=3)
    assert local_feature_pack_build(gallery).images == 4
    expected = features_read_one_by_one(ids)
    settings.SHITU_LOCAL_FEATURES_CACHE = 3
    local_features_cache_clear()
    storage_reads.clear()
    # its header says it would not fit: the body is left unread and the candidates are read one by one
    assert local_features_for_embeddings(tenant=tenant_a.tenant, embedding_ids=ids) == expected
    assert len(storage_reads) == 1 + 4 and storage_reads[0].endswith("local-features.pack")
    assert local_feature_pack_build(gallery) is None
    assert not object_store().exists(local_feature_pack_key(tenant_id=tenant_a.tenant.pk, gallery_id=gallery.pk))


def test_no_pack_past_the_size_where_it_stops_paying_off(tenant_a, monkeypatch):
    from galleries import local_feature_pack

    gallery = Gallery.objects.create(tenant=tenant_a.tenant, name="Past break-even")
    add_images(gallery, 4, seed=4)
    monkeypatch.setattr(local_feature_pack, "MAX_PACK_IMAGES_ON_FILESYSTEM", 3)  # the tests' store is a filesystem
    assert local_feature_pack_build(gallery) is None
    monkeypatch.setattr(local_feature_pack, "MAX_PACK_IMAGES_ON_FILESYSTEM", 4)
    assert local_feature_pack_build(gallery).images == 4


def test_the_backfill_command_packs_every_gallery(tenant_a, tenant_b, capsys):
    galleries = [Gallery.objects.create(tenant=world.tenant, name="Old") for world in (tenant_a, tenant_b)]
    for number, gallery in enumerate(galleries):
        add_images(gallery, 3 + number, seed=10 + number)
    call_command("shitu_local_features")
    out = capsys.readouterr().out
    assert "local feature packs built for 2 of 2 galleries (7 images)" in out
    for number, gallery in enumerate(galleries):
        gallery.refresh_from_db()
        pack = local_feature_pack_load(tenant_id=gallery.tenant_id, gallery_id=gallery.pk)
        assert pack is not None and pack.header.index_version == gallery.index_version
        assert pack.header.image_ids == set(ReferenceImage.unscoped.filter(gallery=gallery).values_list("pk", flat=True))


def _log_of(worker) -> Path:
    """The file the worker process writes its log to (its stdout)."""
    return Path(os.readlink(f"/proc/{worker.pid}/fd/1"))


def test_a_worker_repacks_a_gallery_after_uploads_once_per_burst(tenant_a, celery_worker):
    from tests.support.demo import import_demo_gallery

    log = _log_of(celery_worker)
    offset = log.stat().st_size
    gallery_id = import_demo_gallery(tenant_a.key_client("admin"), "Repacked")
    gallery = Gallery.unscoped.get(pk=gallery_id)
    ready = set(ReferenceImage.unscoped.filter(gallery=gallery, status="ready").exclude(local_features_key="")
                .values_list("pk", flat=True))
    assert len(ready) >= 30
    deadline = time.monotonic() + 90
    while True:
        pack = local_feature_pack_load(tenant_id=gallery.tenant_id, gallery_id=gallery_id)
        if pack is not None and pack.header.image_ids == ready:
            break
        assert time.monotonic() < deadline, "the worker did not repack the gallery"
        time.sleep(0.5)
    gallery.refresh_from_db()
    assert pack.header.index_version == gallery.index_version
    with log.open("rb") as handle:
        handle.seek(offset)
        text = handle.read().decode(errors="replace")
    received = [line for line in text.splitlines() if line.endswith(" received")]
    embeds = sum("galleries.embed_reference_images[" in line for line in received)
    builds = sum("galleries.build_local_feature_pack[" in line for line in received)
    assert embeds >= 30 and 1 <= builds <= embeds // 3, (embeds, builds)
