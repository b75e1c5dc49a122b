"""Shared pieces of the security suite: one factory per tenant-owned model, a snapshot of a tenant's rows, helpers.

Every tenant gets one row of each model, named with a marker string (`ACMEVISIBLE` / `BOLTSECRET`) so a page or a
JSON body that leaks another tenant's data can be caught by searching for the marker.
"""
from __future__ import annotations

import hashlib
import io
import struct
import uuid
import zipfile
import zlib
from dataclasses import dataclass

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.core import serializers as django_serializers

from tests.support.images import product_photo

A_MARKER, B_MARKER = "ACMEVISIBLE", "BOLTSECRET"


@dataclass
class TenantObjects:
    """One row of every tenant-owned model, all of one tenant."""

    world: object
    marker: str
    gallery: object
    product: object
    reference_image: object
    embedding: object
    import_job: object
    recognition: object
    detected_object: object
    match_review: object
    fine_tune_job: object
    model_version: object
    active_model: object
    holdout: object
    api_key: object
    membership: object

    @property
    def tenant(self):
        return self.world.tenant

    def of(self, model: type) -> object | None:
        """This tenant's row of `model`, or None when the factory makes none."""
        for value in vars(self).values():
            if type(value) is model:
                return value
        return None

    def leak_markers(self) -> list[str]:
        """Strings that must never appear in another tenant's responses."""
        users = get_user_model().objects.filter(memberships__tenant=self.tenant).values_list("username", flat=True)
        return [self.marker, self.tenant.slug, str(self.recognition.public_id), self.api_key.prefix,
                self.reference_image.checksum, *users]


def jpeg_bytes(colour: tuple[int, int, int]) -> bytes:
    return product_photo(colour, size=(64, 80))


def make_tenant_objects(world, marker: str) -> TenantObjects:
    """Rows written directly (no worker, no API), each in the state where a leaked write would change it."""
    from galleries.models import Embedding, Gallery, ImportJob, Product, ReferenceImage
    from recognition.models import DetectedObject, MatchReview, Recognition
    from shitu_platform.object_store import object_store
    from shitu_platform.storage import tenant_key
    from shitu_platform.tenancy.models import Membership
    from shitu_platform.tenancy.services import api_key_create
    from modelhub.models import ActiveModel, ModelVersion
    from training.models import FineTuneJob, GalleryHoldout

    tenant = world.tenant
    store = object_store()
    gallery = Gallery(tenant=tenant, name=f"{marker} gallery", description=f"{marker} description")
    gallery.save()
    product = Product(tenant=tenant, gallery=gallery, label=f"{marker} product", display_name=f"{marker} display")
    product.save()
    photo = jpeg_bytes((200, 30, 30) if marker == B_MARKER else (30, 30, 200))
    checksum = hashlib.sha256(photo).hexdigest()
    image_key = tenant_key(tenant.pk, "galleries", str(gallery.pk), "images", checksum)
    store.put(image_key, photo, content_type="image/jpeg")
    reference_image = ReferenceImage(
        tenant=tenant, gallery=gallery, product=product, object_key=image_key, checksum=checksum, size_bytes=len(photo),
        width=64, height=80, status=ReferenceImage.Status.READY,
    )
    reference_image.save()
    embedding = Embedding(tenant=tenant, gallery=gallery, reference_image=reference_image, model_key="colour-histogram@1",
                          vector=[1.0] + [0.0] * 511)
    embedding.save()
    archive_key = tenant_key(tenant.pk, "imports", "0", "archive.zip")
    store.put(archive_key, b"PK\x05\x06" + b"\0" * 18, content_type="application/zip")
    import_job = ImportJob(tenant=tenant, gallery=gallery, archive_key=archive_key, archive_name=f"{marker}.zip",
                           status=ImportJob.Status.DONE, total_rows=1, next_row=1, imported=1)
    import_job.save()
    public_id = uuid.uuid4()
    query_key = tenant_key(tenant.pk, "recognitions", "2026-01-01", str(public_id))
    store.put(query_key, photo, content_type="image/jpeg")
    recognition = Recognition(tenant=tenant, gallery=gallery, public_id=public_id, image_key=query_key, image_width=64,
                              image_height=80, status=Recognition.Status.DONE)
    recognition.save()
    match = {"product_id": product.pk, "label": product.label, "display_name": product.display_name, "score": 0.61,
             "reference_image_id": reference_image.pk}
    detected_object = DetectedObject(
        tenant=tenant, recognition=recognition, rank=0, bbox=[0, 0, 64, 80], whole_image=True, det_score=1.0,
        product=product, reference_image=reference_image, score=0.61, margin=0.01, matches=[match],
    )
    detected_object.save()
    match_review = MatchReview(tenant=tenant, detected_object=detected_object, gallery=gallery,
                               reason=MatchReview.Reason.LOW_MARGIN, suggested_product=product)
    match_review.save()
    model_version = ModelVersion(tenant=tenant, kind=ModelVersion.Kind.EXTRACTOR, key=f"{marker.lower()}-{tenant.pk}@1")
    model_version.save()
    fine_tune_job = FineTuneJob(tenant=tenant, gallery=gallery, state=FineTuneJob.State.QUEUED, log=f"{marker} log")
    fine_tune_job.save()
    active_model = ActiveModel(tenant=tenant, extractor=model_version)
    active_model.save()
    holdout = GalleryHoldout(tenant=tenant, gallery=gallery, reference_image_ids=[reference_image.pk])
    holdout.save()
    api_key, _ = api_key_create(tenant=tenant, name=f"{marker} key", role="member")
    membership = Membership.objects.for_tenant(tenant).get(user=world.users["viewer"])
    return TenantObjects(
        world=world, marker=marker, gallery=gallery, product=product, reference_image=reference_image,
        embedding=embedding, import_job=import_job, recognition=recognition, detected_object=detected_object,
        match_review=match_review, fine_tune_job=fine_tune_job, model_version=model_version,
        active_model=active_model, holdout=holdout, api_key=api_key, membership=membership,
    )


@pytest.fixture()
def a_objects(tenant_a) -> TenantObjects:
    return make_tenant_objects(tenant_a, A_MARKER)


@pytest.fixture()
def b_objects(tenant_b) -> TenantObjects:
    return make_tenant_objects(tenant_b, B_MARKER)


def staff_client(world, codenames: list[str]):
    """A Django test client logged in as the world's admin, made staff (not superuser) with these permissions."""
    from django.contrib.auth.models import Permission
    from django.test import Client

    staff = world.users["admin"]
    staff.is_staff = True
    staff.save()
    staff.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(staff)
    return client


def tenant_owned_models() -> list[type]:
    from shitu_platform.tenancy.models import TenantOwnedModel

    return [model for model in apps.get_models() if issubclass(model, TenantOwnedModel)]


def tenant_snapshot(tenant) -> dict[str, object]:
    """Every row a tenant owns (all tenant-owned models, its model versions, its users) and its stored objects."""
    from shitu_platform.object_store import object_store
    from shitu_platform.storage import tenant_prefix
    from shitu_platform.tenancy.models import Tenant
    from modelhub.models import ModelVersion

    rows: dict[str, object] = {}
    for model in tenant_owned_models():
        rows[model._meta.label] = django_serializers.serialize("json", model.objects.for_tenant(tenant).order_by("pk"))
    rows["tenant"] = django_serializers.serialize("json", Tenant.objects.filter(pk=tenant.pk))
    rows["model_versions"] = django_serializers.serialize("json", ModelVersion.objects.filter(tenant=tenant).order_by("pk"))
    users = get_user_model().objects.filter(memberships__tenant=tenant).order_by("pk")
    rows["users"] = django_serializers.serialize("json", users)
    rows["objects"] = sorted((info.key, info.etag) for info in object_store().list(tenant_prefix(tenant.pk)))
    return rows


def upload(data: bytes, name: str = "photo.jpg", content_type: str | None = None):
    """A file for the test clients' multipart encoder."""
    if content_type is not None:
        from django.core.files.uploadedfile import SimpleUploadedFile

        return SimpleUploadedFile(name, data, content_type=content_type)
    handle = io.BytesIO(data)
    handle.name = name
    return handle


def assert_error_envelope(response, *, status: int | None = None, code: str | None = None) -> dict:
    """A 4xx with the platform's `{"error": {"code", "message"}}` body; returns the error object."""
    body_text = response.content[:300]
    assert 400 <= response.status_code < 500, f"{response.status_code}: {body_text!r}"
    if status is not None:
        assert response.status_code == status, f"{response.status_code} != {status}: {body_text!r}"
    assert response.get("Content-Type", "").startswith("application/json"), f"not JSON: {response.get('Content-Type')}: {body_text!r}"
    error = response.json().get("error")
    assert isinstance(error, dict) and isinstance(error.get("code"), str) and isinstance(error.get("message"), str), response.json()
    assert error["code"] and error["message"]
    if code is not None:
        assert error["code"] == code, f"{error} (wanted code {code})"
    return error


class NeverFinished:
    """Stands in for a Celery AsyncResult when no inference worker runs: the sync API falls back to 202."""

    def get(self, timeout=None, **_):
        from celery.exceptions import TimeoutError as CeleryTimeout

        raise CeleryTimeout()


@pytest.fixture()
def no_inference_worker(monkeypatch, settings):
    """Recognitions are stored and answered 202 at once, and nothing is sent to the broker."""
    settings.SHITU_RECOGNITION_TIMEOUT = 0.01
    monkeypatch.setattr("recognition.services.recognition_enqueue", lambda recognition: NeverFinished())


# --- hostile and unusual images ------------------------------------------------------------------

def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _encoded(image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _noise(size: tuple[int, int], mode: str = "RGB", seed: int = 1):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "CMYK": 4, "L": 1, "LA": 2}[mode]
    pixels = rng.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
    return Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels, mode=mode)


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares width x height pixels (a decompression bomb by its header)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 1024)) + _png_chunk(b"IEND", b"")


def gif_bomb() -> bytes:
    """GIF89a declaring a 65535 x 65535 screen and frame with a few bytes of LZW data."""
    screen = b"GIF89a" + struct.pack("<HHBBB", 65535, 65535, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, 65535, 65535, 0) + b"\x02\x02\x44\x01\x00"
    return screen + frame + b"\x3b"


def webp_bomb() -> bytes:
    """WebP extended header (VP8X) declaring a 16384 x 16384 canvas."""
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\0\0\0\0" + (16383).to_bytes(3, "little") + (16383).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", 4 + len(vp8x)) + b"WEBP" + vp8x


def truncated_png() -> bytes:
    data = _encoded(_noise((200, 200)), "PNG")
    return data[: len(data) // 2]


def truncated_jpeg() -> bytes:
    data = _encoded(_noise((200, 200)), "JPEG", quality=90)
    return data[: len(data) // 2]


def exif_rotated_jpeg() -> bytes:
    """Stored 60 wide x 100 high with EXIF orientation 6 (rotate 90°): upright it is 100 x 60."""
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6
    return _encoded(_noise((60, 100)), "JPEG", exif=exif.tobytes())


def cmyk_jpeg() -> bytes:
    return _encoded(_noise((64, 64), "CMYK"), "JPEG")


def png_16bit() -> bytes:
    import numpy as np
    from PIL import Image

    values = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16).astype(np.uint16)
    image = Image.fromarray(values)
    assert image.mode.startswith("I;16"), image.mode
    return _encoded(image, "PNG")


def animated_gif() -> bytes:
    frames = [_noise((48, 48), seed=seed).convert("P") for seed in range(3)]
    return _encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def rgba_png() -> bytes:
    return _encoded(_noise((48, 48), "RGBA"), "PNG")


def la_png() -> bytes:
    return _encoded(_noise((48, 48), "LA"), "PNG")


def palette_png() -> bytes:
    return _encoded(_noise((48, 48)).convert("P"), "PNG")


def grey_jpeg() -> bytes:
    return _encoded(_noise((48, 48), "L"), "JPEG")


def animated_webp() -> bytes:
    frames = [_noise((48, 48), seed=seed) for seed in range(2)]
    return _encoded(frames[0], "WEBP", save_all=True, append_images=frames[1:])


def tiff_image() -> bytes:
    return _encoded(_noise((48, 48)), "TIFF")


def bmp_image() -> bytes:
    return _encoded(_noise((48, 48)), "BMP")


HTML_PAYLOAD = b"<html><body><script>alert(document.domain)</script></body></html>"


def jpeg_with_zip_appended() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("evil.html", HTML_PAYLOAD)
    return jpeg_bytes((90, 90, 90)) + buffer.getvalue()


def jpeg_with_html_appended() -> bytes:
    return jpeg_bytes((91, 91, 91)) + HTML_PAYLOAD


def png_html_polyglot() -> bytes:
    """A valid PNG whose text chunk is an HTML page: browsers sniffing it as HTML would run the script."""
    data = _encoded(_noise((48, 48)), "PNG")
    text = _png_chunk(b"tEXt", b"Comment\0" + HTML_PAYLOAD)
    return data[:33] + text + data[33:]  # right after IHDR


PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><script>alert(1)</script></svg>'
EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\n(%pipe%id) (w) file\nshowpage\n"  # Ghostscript would run it
PSD = b"8BPS\x00\x01" + b"\x00" * 6 + b"\x00\x03" + struct.pack(">II", 64, 64) + b"\x00\x08\x00\x03" + b"\x00" * 64
HEIC = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64

# name -> (bytes factory, HTTP status, error code): every upload path refuses these.
HOSTILE_IMAGES = {
    "zero_bytes": (lambda: b"", 400, "empty_image"),
    "png_bomb_30000x30000": (lambda: png_header_only(30000, 30000), 413, "image_too_large"),
    "png_header_8000x6000": (lambda: png_header_only(8000, 6000), 413, "image_too_large"),
    "png_header_max_uint32": (lambda: png_header_only(2**31 - 1, 2**31 - 1), 413, "image_too_large"),
    "gif_bomb_65535x65535": (gif_bomb, 413, "image_too_large"),
    "webp_bomb_16384x16384": (webp_bomb, 413, "image_too_large"),
    "truncated_jpeg": (truncated_jpeg, 400, "truncated_image"),
    "truncated_png": (truncated_png, 400, "truncated_image"),
    "jpeg_soi_then_garbage": (lambda: b"\xff\xd8\xff\xe0" + b"\x13" * 300, 400, "truncated_image"),
    "thin_20000x4": (lambda: _encoded(_noise((20000, 4)), "PNG"), 400, "image_too_small"),
    "html_named_jpg": (lambda: HTML_PAYLOAD, 400, "not_an_image"),
    "plain_text": (lambda: b"just some text, definitely not a photo\n" * 4, 400, "not_an_image"),
    "zip_archive": (lambda: jpeg_with_zip_appended()[len(jpeg_bytes((90, 90, 90))):], 400, "not_an_image"),
    "random_bytes": (lambda: bytes(range(256)) * 8, 400, "not_an_image"),
    "pdf_named_jpg": (lambda: PDF, 415, "unsupported_image_format"),
    "svg_named_jpg": (lambda: SVG, 415, "unsupported_image_format"),
    "eps_named_jpg": (lambda: EPS, 415, "unsupported_image_format"),
    "psd_named_jpg": (lambda: PSD, 415, "unsupported_image_format"),
    "heic_named_jpg": (lambda: HEIC, 415, "unsupported_image_format"),
}

# name -> (bytes factory, upright (width, height) or None): every upload path accepts these.
ACCEPTED_IMAGES = {
    "cmyk_jpeg": (cmyk_jpeg, (64, 64)),
    "png_16bit_grey": (png_16bit, (64, 64)),
    "animated_gif": (animated_gif, (48, 48)),
    "animated_webp": (animated_webp, (48, 48)),
    "rgba_png": (rgba_png, (48, 48)),
    "la_png": (la_png, (48, 48)),
    "palette_png": (palette_png, (48, 48)),
    "grey_jpeg": (grey_jpeg, (48, 48)),
    "tiff": (tiff_image, (48, 48)),
    "bmp": (bmp_image, (48, 48)),
    "exif_rotated_jpeg": (exif_rotated_jpeg, (100, 60)),
    "jpeg_with_zip_appended": (jpeg_with_zip_appended, (64, 80)),
    "jpeg_with_html_appended": (jpeg_with_html_appended, (64, 80)),
    "png_that_is_also_html": (png_html_polyglot, (48, 48)),
}


# --- clients that report a 500 instead of raising it ---------------------------------------------------

class SafeClient:
    """A test client whose requests each run in a savepoint: a server error comes back as the 500 a user would
    see (instead of being re-raised), and a failed query inside it does not poison the test's transaction."""

    def __init__(self, client) -> None:
        client.raise_request_exception = False
        self.client = client

    def __getattr__(self, method: str):
        send = getattr(self.client, method)
        if method not in ("get", "post", "put", "patch", "delete", "head", "options", "generic"):
            return send

        def request(*args, **kwargs):
            from django.db import transaction

            savepoint = transaction.savepoint()
            response = send(*args, **kwargs)
            if savepoint is not None:
                if response.status_code >= 500:
                    transaction.set_rollback(False)
                    transaction.savepoint_rollback(savepoint)
                else:
                    transaction.savepoint_commit(savepoint)
            return response

        return request


def safe_key_client(world, role: str = "admin") -> SafeClient:
    return SafeClient(world.key_client(role))


def safe_session_client(world, role: str = "owner") -> SafeClient:
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_login(world.users[role])
    return SafeClient(client)


def assert_healthy() -> None:
    """The probe still answers after whatever the test sent."""
    from django.test import Client

    response = Client().get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
