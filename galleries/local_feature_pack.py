"""Each gallery's pack of reference local features: every ready image's RootSIFT blob in one object, so a cold worker
reads a gallery's features in one storage request instead of one per candidate.

Stored next to the gallery's Faiss caches (``.../galleries/<id>/index/local-features.pack``) and, like them, only a
cache: the per-image ``.rootsift`` objects stay the truth, the pack is rebuilt from them in a worker when the gallery
changes (debounced) or by ``manage.py shitu_local_features``, and images added after a build are read one by one.
Galleries of more than MAX_PACK_IMAGES images (200 on a local filesystem) get no pack: there a cold worker's 50
reads cost less than reading the pack.

Format (no pickle): ``SHLP``, the JSON header's length (8 bytes, big-endian), the JSON header (format version,
gallery id, the gallery's index_version at the build, body length and CRC-32, and (image id, offset, length) rows
that tile the body exactly), then the body: the images' ``LocalFeatures.to_bytes`` blobs, concatenated.
"""
from __future__ import annotations

import json
import logging
import shutil
import struct
import tempfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from typing import BinaryIO

from django.conf import settings
from django.core.cache import cache
from django.db import transaction

from galleries.models import Gallery, ReferenceImage
from recognition.engine.local_features import LocalFeatures, LocalFeaturesError
from shitu_platform.object_store import object_store
from shitu_platform.storage import ObjectNotFound, ObjectStoreError, tenant_key

logger = logging.getLogger(__name__)

MAGIC = b"SHLP"
FORMAT_VERSION = 1
MAX_HEADER_BYTES = 64 * 1024 * 1024
# Past about this many images, reading the whole pack costs more than 50 candidates' own reads (bench/
# local_feature_pack.py, 66 KB per image: S3 (moto on loopback) breaks even near 1,000, a local filesystem near 200).
MAX_PACK_IMAGES = 1000
MAX_PACK_IMAGES_ON_FILESYSTEM = 200
REBUILD_DELAY_SECONDS = 5  # changes arriving within this window (an import's batches, a burst of uploads) share one build
_PREAMBLE = struct.Struct(">4sQ")
_FETCH_THREADS = 8  # per-image objects are read in parallel: on S3 a build is round trips, not bandwidth
_FETCH_CHUNK = 64  # images in flight at once, so a build never holds a whole gallery's features in memory


class LocalFeaturePackError(Exception):
    """A pack that is not one, is truncated, or does not belong to the gallery it was read for."""

    code = "local_feature_pack_error"


@dataclass(frozen=True)
class PackHeader:
    gallery_id: int
    index_version: int  # the gallery's index_version when the build started: the pack holds at least that content
    rows: tuple[tuple[int, int, int], ...]  # (reference image id, offset in the body, length), in body order
    body_length: int
    body_crc32: int

    @property
    def image_ids(self) -> frozenset[int]:
        return frozenset(row[0] for row in self.rows)

    @property
    def signature(self) -> tuple[int, int, int]:
        """Tells two builds apart without their bodies."""
        return self.index_version, self.body_length, self.body_crc32


@dataclass(frozen=True)
class LocalFeaturePack:
    header: PackHeader
    body: bytes

    @cached_property
    def _rows_by_image(self) -> dict[int, tuple[int, int]]:
        return {image_id: (offset, length) for image_id, offset, length in self.header.rows}

    def features_of(self, image_id: int) -> LocalFeatures | None:
        """One image's features (None when the pack does not hold it); raises LocalFeaturesError for a damaged blob."""
        row = self._rows_by_image.get(image_id)
        if row is None:
            return None
        offset, length = row
        return LocalFeatures.from_bytes(memoryview(self.body)[offset : offset + length])

    def features(self) -> list[tuple[int, LocalFeatures]]:
        """Every image's features, each blob validated; one damaged blob refuses the whole pack."""
        view = memoryview(self.body)
        try:
            return [(image_id, LocalFeatures.from_bytes(view[offset : offset + length]))
                    for image_id, offset, length in self.header.rows]
        except LocalFeaturesError as error:
            raise LocalFeaturePackError(f"a blob in the pack is not local features: {error}") from error


@dataclass(frozen=True)
class PackBuild:
    key: str
    index_version: int
    images: int
    size_bytes: int


def local_feature_pack_key(*, tenant_id: int, gallery_id: int) -> str:
    """Beside the gallery's Faiss caches (``galleries.indexing.persisted_key``)."""
    return tenant_key(tenant_id, "galleries", str(gallery_id), "index", "local-features.pack")


def pack_encode(*, gallery_id: int, index_version: int, blobs: list[tuple[int, bytes]]) -> bytes:
    """A pack in memory (tests, small galleries); the builder streams the same layout through temporary files."""
    rows, offset, crc = [], 0, 0
    for image_id, blob in blobs:
        rows.append((image_id, offset, len(blob)))
        offset += len(blob)
        crc = zlib.crc32(blob, crc)
    return _preamble_and_header(gallery_id, index_version, rows, offset, crc) + b"".join(blob for _, blob in blobs)


def pack_decode(blob: bytes, *, gallery_id: int) -> LocalFeaturePack:
    import io

    stream = io.BytesIO(blob)
    return pack_read_body(stream, pack_read_header(stream, gallery_id=gallery_id))


def pack_read_header(stream: BinaryIO, *, gallery_id: int) -> PackHeader:
    """Read and check the magic bytes and the header, leaving the stream at the body."""
    preamble = stream.read(_PREAMBLE.size)
    if len(preamble) != _PREAMBLE.size:
        raise LocalFeaturePackError("the pack is shorter than its preamble")
    magic, header_length = _PREAMBLE.unpack(preamble)
    if magic != MAGIC:
        raise LocalFeaturePackError("not a local feature pack (bad magic bytes)")
    if not 0 < header_length <= MAX_HEADER_BYTES:
        raise LocalFeaturePackError(f"header length {header_length} is out of range")
    raw = stream.read(header_length)
    if len(raw) != header_length:
        raise LocalFeaturePackError("the pack is truncated inside its header")
    try:
        header = json.loads(raw)
    except ValueError as error:
        raise LocalFeaturePackError(f"the header is not JSON: {error}") from error
    if not isinstance(header, dict):
        raise LocalFeaturePackError("the header is not a JSON object")
    if header.get("format") != FORMAT_VERSION:
        raise LocalFeaturePackError(f"pack format {header.get('format')!r} is not supported (expected {FORMAT_VERSION})")
    fields = {name: header.get(name) for name in ("gallery_id", "index_version", "body_length", "body_crc32")}
    if not all(_is_count(value) for value in fields.values()):
        raise LocalFeaturePackError(f"header fields must be non-negative integers: {fields}")
    if fields["gallery_id"] != gallery_id:
        raise LocalFeaturePackError(f"the pack belongs to gallery {fields['gallery_id']}, not {gallery_id}")
    rows = header.get("rows")
    if not isinstance(rows, list):
        raise LocalFeaturePackError("the header has no rows")
    checked, expected_offset, seen = [], 0, set()
    for row in rows:
        if not (isinstance(row, list) and len(row) == 3 and all(_is_count(value) for value in row)):
            raise LocalFeaturePackError(f"a row is not (image id, offset, length): {row!r}")
        image_id, offset, length = row
        if offset != expected_offset or length == 0 or image_id in seen:
            raise LocalFeaturePackError(f"rows do not tile the body (row {row!r}, expected offset {expected_offset})")
        seen.add(image_id)
        expected_offset += length
        checked.append((image_id, offset, length))
    if expected_offset != fields["body_length"]:
        raise LocalFeaturePackError(f"rows cover {expected_offset} bytes, the body is {fields['body_length']}")
    return PackHeader(gallery_id=gallery_id, index_version=fields["index_version"], rows=tuple(checked),
                      body_length=fields["body_length"], body_crc32=fields["body_crc32"])


def pack_read_body(stream: BinaryIO, header: PackHeader) -> LocalFeaturePack:
    """Read the body the header describes: exactly that many bytes, nothing after them, the same CRC-32."""
    body = stream.read(header.body_length)
    if len(body) != header.body_length:
        raise LocalFeaturePackError(f"the pack is truncated: {len(body)} of {header.body_length} body bytes")
    if stream.read(1):
        raise LocalFeaturePackError("the pack has bytes after its body")
    if zlib.crc32(body) != header.body_crc32:
        raise LocalFeaturePackError("the pack's body does not match its checksum")
    return LocalFeaturePack(header=header, body=body)


def local_feature_pack_load(*, tenant_id: int, gallery_id: int) -> LocalFeaturePack | None:
    """The gallery's pack, or None when there is none or it cannot be read (callers then read images one by one)."""
    try:
        with object_store().open(local_feature_pack_key(tenant_id=tenant_id, gallery_id=gallery_id)) as stream:
            return pack_read_body(stream, pack_read_header(stream, gallery_id=gallery_id))
    except ObjectNotFound:
        return None
    except (ObjectStoreError, LocalFeaturePackError, OSError) as error:
        logger.warning("local feature pack of gallery %s is unreadable: %s", gallery_id, error)
        return None


def local_feature_pack_build(gallery: Gallery) -> PackBuild | None:
    """Pack the features of the gallery's ready images from their per-image objects and store it (worker code).

    None, and no pack, for a gallery with more images than `pack_max_images()`: reading it whole would cost more than
    reading one recognition's candidates, or not fit a worker's features cache, so such galleries read them one by one."""
    from galleries.indexing import gallery_index_version

    key = local_feature_pack_key(tenant_id=gallery.tenant_id, gallery_id=gallery.pk)
    version = gallery_index_version(gallery)  # read before the rows: the pack holds at least this version's images
    images = list(ReferenceImage.objects.for_tenant(gallery.tenant)
                  .filter(gallery_id=gallery.pk, status=ReferenceImage.Status.READY)
                  .exclude(local_features_key="").order_by("pk").values_list("pk", "local_features_key"))
    if len(images) > pack_max_images():
        _delete_quietly(key)
        return None
    rows, offset, crc = [], 0, 0
    with tempfile.SpooledTemporaryFile(max_size=32 * 1024 * 1024) as body, \
            ThreadPoolExecutor(max_workers=_FETCH_THREADS) as pool:
        for start in range(0, len(images), _FETCH_CHUNK):
            chunk = images[start : start + _FETCH_CHUNK]
            for (image_id, _), blob in zip(chunk, pool.map(_checked_blob, [k for _, k in chunk])):
                if blob is None:
                    continue  # missing or damaged: the image stays unverified, as it would be read one by one
                body.write(blob)
                rows.append((image_id, offset, len(blob)))
                offset += len(blob)
                crc = zlib.crc32(blob, crc)
        head = _preamble_and_header(gallery.pk, version, rows, offset, crc)
        with tempfile.SpooledTemporaryFile(max_size=32 * 1024 * 1024) as whole:
            whole.write(head)
            body.seek(0)
            shutil.copyfileobj(body, whole)
            whole.seek(0)
            object_store().put(key, whole, length=len(head) + offset)
    return PackBuild(key=key, index_version=version, images=len(rows), size_bytes=len(head) + offset)


def pack_max_images() -> int:
    """The most images a pack holds: what pays off on this store and what a worker's features cache can keep."""
    from shitu_platform.storage import FilesystemObjectStore

    pays_off = MAX_PACK_IMAGES_ON_FILESYSTEM if isinstance(object_store(), FilesystemObjectStore) else MAX_PACK_IMAGES
    return min(pays_off, settings.SHITU_LOCAL_FEATURES_CACHE)


def local_feature_pack_rebuild_later(*, gallery: Gallery) -> None:
    """Queue a rebuild after the gallery changed; one queued per gallery at a time, run REBUILD_DELAY_SECONDS later
    so that a burst of changes (an import's batches, many uploads) is packed once."""
    if not cache.add(_queued_key(gallery.pk), "1", timeout=600):
        return
    from galleries.tasks import build_local_feature_pack

    gallery_id, tenant_id = gallery.pk, gallery.tenant_id
    transaction.on_commit(lambda: build_local_feature_pack.apply_async(
        args=[gallery_id], kwargs={"tenant_id": tenant_id}, countdown=REBUILD_DELAY_SECONDS, queue="default"))


def local_feature_pack_rebuild(*, gallery_id: int) -> dict:
    """The task's body: later changes queue another build from here on."""
    cache.delete(_queued_key(gallery_id))
    gallery = Gallery.unscoped.select_related("tenant").filter(pk=gallery_id).first()  # worker: handed an id
    if gallery is None:
        return {"skipped": "the gallery is gone"}
    built = local_feature_pack_build(gallery)
    return {"images": built.images, "index_version": built.index_version} if built else {"skipped": "too large"}


def _queued_key(gallery_id: int) -> str:
    return f"galleries:local-feature-pack:{gallery_id}"


def _checked_blob(key: str) -> bytes | None:
    try:
        blob = object_store().get(key)
        LocalFeatures.from_bytes(blob)
    except (ObjectStoreError, LocalFeaturesError):
        return None
    return blob


def _preamble_and_header(gallery_id: int, index_version: int, rows: list, body_length: int, crc: int) -> bytes:
    header = json.dumps({"format": FORMAT_VERSION, "gallery_id": gallery_id, "index_version": index_version,
                         "body_length": body_length, "body_crc32": crc, "rows": rows},
                        separators=(",", ":")).encode()
    return _PREAMBLE.pack(MAGIC, len(header)) + header


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _delete_quietly(key: str) -> None:
    try:
        object_store().delete(key)
    except ObjectStoreError:
        pass
