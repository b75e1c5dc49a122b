"""Hostile input through the real API: every refusal is a clear 4xx with `{"error": {"code", "message"}}` (or, inside an
import, a failed row with a reason), never a 500, and the service stays healthy afterwards.

Known bugs are `xfail(strict=True)` with the exact failing request in the reason; fixing one turns its test into a
failure ("XPASS(strict)") so the mark is removed with the fix.
"""
from __future__ import annotations

import base64
import io
import json
import time
import zipfile

import pytest
from django.conf import settings as django_settings
from django.urls import reverse
from django.utils.module_loading import import_string
from rest_framework.test import APIClient

from galleries.models import Gallery, ImportJob, Product, ReferenceImage
from recognition.models import DetectedObject, Recognition
from shitu_platform.object_store import object_store
from shitu_platform.storage import tenant_prefix
from tests.security.conftest import (
    ACCEPTED_IMAGES,
    HOSTILE_IMAGES,
    HTML_PAYLOAD,
    SafeClient,
    assert_error_envelope,
    assert_healthy,
    jpeg_bytes,
    safe_key_client,
    safe_session_client,
    upload,
)
from tests.security.test_isolation_all_routes import LIST_ROUTES, OBJECT_ROUTES, url_kwargs

pytestmark = pytest.mark.django_db


# --- a tenant's own rows to aim requests at ---------------------------------------------------------

class Own:
    """Two galleries, a product, a finished recognition with one detected object, a failed fine-tune job."""

    def __init__(self, world) -> None:
        from training.models import FineTuneJob

        self.world = world
        self.gallery = Gallery(tenant=world.tenant, name="Drinks")
        self.gallery.save()
        Gallery(tenant=world.tenant, name="Snacks").save()  # a name already taken, for rename clashes
        self.product = Product(tenant=world.tenant, gallery=self.gallery, label="Red Can 330 ml")
        self.product.save()
        self.recognition = Recognition(tenant=world.tenant, gallery=self.gallery, image_key="none", image_width=64,
                                       image_height=80, status=Recognition.Status.DONE)
        self.recognition.save()
        DetectedObject(tenant=world.tenant, recognition=self.recognition, rank=0, bbox=[0, 0, 64, 80], det_score=1.0,
                       product=self.product, score=0.9, matches=[{"product_id": self.product.pk, "label": self.product.label,
                                                                   "score": 0.9, "reference_image_id": None}]).save()
        self.fine_tune_job = FineTuneJob(tenant=world.tenant, gallery=self.gallery, state=FineTuneJob.State.FAILED)
        self.fine_tune_job.save()

    def stored_objects(self) -> list[str]:
        return sorted(info.key for info in object_store().list(tenant_prefix(self.world.tenant.pk)))


@pytest.fixture()
def own(tenant_a) -> Own:
    return Own(tenant_a)


# --- image intake: the same refusals on every path ----------------------------------------------------

def _post_image(client, own: Own, path: str, data: bytes):
    if path == "product-images":
        return client.post(f"/api/v1/products/{own.product.pk}/images/",
                           {"image": upload(data, "photo.jpg", "image/jpeg")}, format="multipart")
    if path == "recognition-multipart":
        return client.post("/api/v1/recognitions/", {"image": upload(data, "photo.jpg", "image/jpeg"), "run_async": "true"},
                           format="multipart")
    return client.post("/api/v1/recognitions/", {"image_base64": base64.b64encode(data).decode(), "run_async": True},
                       format="json")


IMAGE_PATHS = ["product-images", "recognition-multipart", "recognition-base64"]


@pytest.mark.parametrize("case", sorted(HOSTILE_IMAGES))
def test_hostile_image_is_refused_with_its_code_on_every_path(own, no_inference_worker, case):
    make, status, code = HOSTILE_IMAGES[case]
    data = make()
    client = safe_key_client(own.world, "member")
    stored_before = own.stored_objects()
    for path in IMAGE_PATHS:
        wanted = "invalid_request" if (path, case) == ("recognition-base64", "zero_bytes") else code  # empty field
        assert_error_envelope(_post_image(client, own, path, data), status=status, code=wanted)
    assert not ReferenceImage.unscoped.filter(product=own.product).exists()
    assert Recognition.unscoped.filter(tenant=own.world.tenant).count() == 1
    assert own.stored_objects() == stored_before, "a refused upload left an object in storage"
    assert_healthy()


@pytest.mark.parametrize("case", sorted(ACCEPTED_IMAGES))
def test_unusual_but_valid_image_is_accepted_upright_on_every_path(own, no_inference_worker, case):
    make, (width, height) = ACCEPTED_IMAGES[case]
    data = make()
    client = safe_key_client(own.world, "member")
    for path in IMAGE_PATHS:
        response = _post_image(client, own, path, data)
        assert response.status_code in (201, 202), f"{path}: {response.status_code}: {response.content[:300]!r}"
        body = response.json()
        stored = body[0] if isinstance(body, list) else body
        size = (stored["width"], stored["height"]) if path == "product-images" else (stored["image_width"], stored["image_height"])
        assert size == (width, height), f"{path}: {size} is not the size of the EXIF-upright image"


@pytest.mark.parametrize("case", ["jpeg_with_zip_appended", "jpeg_with_html_appended", "png_that_is_also_html"])
def test_polyglot_is_only_ever_served_re_encoded(own, case):
    """Polyglots decode as images and are kept (the bytes are the customer's), but no route serves the original
    bytes: thumbnails are re-encoded JPEGs with nosniff, so the appended HTML/zip never reaches a browser."""
    client = safe_key_client(own.world, "member")
    response = _post_image(client, own, "product-images", ACCEPTED_IMAGES[case][0]())
    assert response.status_code == 201
    reference_image_id = response.json()[0]["id"]
    page = safe_session_client(own.world)
    for url in (f"/dashboard/galleries/images/{reference_image_id}/thumb/",
                f"/dashboard/recognition/reference-images/{reference_image_id}/thumb/"):
        thumb = page.get(url)
        assert thumb.status_code == 200 and thumb["Content-Type"] == "image/jpeg", url
        assert thumb["X-Content-Type-Options"] == "nosniff"
        assert thumb.content[:3] == b"\xff\xd8\xff" and HTML_PAYLOAD not in thumb.content and b"PK\x03\x04" not in thumb.content
        assert "X-Shitu-Placeholder" not in thumb, "the polyglot was stored but its thumbnail could not be drawn"


def test_file_over_the_byte_limit_is_413_before_decoding(own, no_inference_worker, settings):
    settings.SHITU_MAX_IMAGE_BYTES = 50_000
    data = jpeg_bytes((5, 5, 5)) + b"\0" * 50_000
    for path in IMAGE_PATHS:
        response = _post_image(safe_key_client(own.world, "member"), own, path, data)
        assert_error_envelope(response, status=413, code="file_too_large")


def test_upload_field_shapes(own):
    client = safe_key_client(own.world, "member")
    url = f"/api/v1/products/{own.product.pk}/images/"
    assert_error_envelope(client.post(url, {}, format="multipart"), status=400)
    assert_error_envelope(client.post(url, {"image": "not a file"}, format="multipart"), status=400)
    assert_error_envelope(client.post(url, {"image": "x"}, format="json"), status=400)
    for bbox in ["abc", "[1, 2, 3]", '["a", 1, 2, 3]', "[0, 0, 1e400, 1e400]", "[NaN, 0, 10, 10]", "[-5, -5, 10, 10]",
                 "[0, 0, 99999, 99999]", '{"x": 1}', "[[1], 2, 3, 4]"]:
        response = client.post(url, {"image": upload(jpeg_bytes((8, 8, 8))), "bbox": bbox}, format="multipart")
        assert_error_envelope(response, status=400)
    assert not ReferenceImage.unscoped.filter(product=own.product).exists()


# --- import archives, refused when uploaded -----------------------------------------------------------

def make_zip(members: dict[str, bytes | str], *, method: int = zipfile.ZIP_DEFLATED, symlinks: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in members.items():
            if name.endswith("/"):
                archive.writestr(zipfile.ZipInfo(name), b"")
            else:
                archive.writestr(zipfile.ZipInfo(name), data, compress_type=method)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o120777 << 16
            archive.writestr(info, target)
    return buffer.getvalue()


def _patch_member(data: bytes, name: str, patch) -> bytes:
    """Apply `patch(raw, header_offset, is_central)` to the local header and central-directory entry of `name`."""
    raw, target = bytearray(data), name.encode()
    for signature, name_length_at, name_at, is_central in ((b"PK\x03\x04", 26, 30, False), (b"PK\x01\x02", 28, 46, True)):
        offset = raw.find(signature)
        while offset >= 0:
            length = int.from_bytes(raw[offset + name_length_at: offset + name_length_at + 2], "little")
            if raw[offset + name_at: offset + name_at + length] == target:
                patch(raw, offset, is_central)
            offset = raw.find(signature, offset + 4)
    return bytes(raw)


def encrypted(data: bytes, name: str) -> bytes:
    """Flag `name` as encrypted (general-purpose bit 0): reading it needs a password."""
    def patch(raw, offset, is_central):
        raw[offset + (8 if is_central else 6)] |= 1
    return _patch_member(data, name, patch)


def compression_method(data: bytes, name: str, method: int) -> bytes:
    """Claim a compression method for `name` (9 = Deflate64, which Python cannot read)."""
    def patch(raw, offset, is_central):
        at = offset + (10 if is_central else 8)
        raw[at: at + 2] = method.to_bytes(2, "little")
    return _patch_member(data, name, patch)


def bad_crc(data: bytes, name: str) -> bytes:
    def patch(raw, offset, is_central):
        raw[offset + (16 if is_central else 14)] ^= 0xFF
    return _patch_member(data, name, patch)


def corrupt_deflate(data: bytes, name: str) -> bytes:
    """Break the first bytes of `name`'s deflate stream, so inflating it fails (zlib.error)."""
    def patch(raw, offset, is_central):
        if not is_central:
            start = offset + 30 + int.from_bytes(raw[offset + 26: offset + 28], "little") + int.from_bytes(raw[offset + 28: offset + 30], "little")
            raw[start: start + 3] = b"\xff\xff\xff"
    return _patch_member(data, name, patch)


def member_before_the_start(data: bytes, *, still_readable: list[str]) -> bytes:
    """Record the central directory one byte later than it is, so zipfile reads every local header one byte early,
    and move the `still_readable` members' recorded offsets one byte on: the first member now starts at offset -1."""
    raw = bytearray(data)
    end = raw.rfind(b"PK\x05\x06")
    raw[end + 16: end + 20] = (int.from_bytes(raw[end + 16: end + 20], "little") + 1).to_bytes(4, "little")

    def patch(raw, offset, is_central):
        if is_central:
            raw[offset + 42: offset + 46] = (int.from_bytes(raw[offset + 42: offset + 46], "little") + 1).to_bytes(4, "little")
    data = bytes(raw)
    for name in still_readable:
        data = _patch_member(data, name, patch)
    return data


def member_named_nul() -> bytes:
    """A member whose name starts with NUL: zipfile cuts the name there, leaving an empty file name."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(zipfile.ZipInfo("\x00evil.jpg"), b"x")
        archive.writestr("labels.txt", "a.jpg\tA\n")
    return buffer.getvalue()


GOOD = {"p/1.jpg": jpeg_bytes((200, 0, 0)), "labels.txt": "p/1.jpg\tRed Can 330 ml\n"}


def _csv_zip(products_csv: str) -> bytes:
    return make_zip({"a.jpg": jpeg_bytes((1, 2, 3)), "products.csv": products_csv})

# name -> (archive factory, settings overrides, status, code)
REFUSED_ARCHIVES = {
    "not_a_zip": (lambda: b"this is not a zip", {}, 400, "invalid_archive"),
    "jpeg_named_zip": (lambda: jpeg_bytes((1, 1, 1)), {}, 400, "invalid_archive"),
    "zero_bytes": (lambda: b"", {}, 400, "invalid_archive"),
    "empty_zip": (lambda: make_zip({}), {}, 400, "invalid_archive"),
    "no_manifest": (lambda: make_zip({"p/1.jpg": jpeg_bytes((1, 2, 3))}), {}, 400, "invalid_archive"),
    "manifest_only_in_a_nested_zip": (lambda: make_zip({"inner.zip": make_zip(GOOD)}), {}, 400, "invalid_archive"),
    "labels_not_utf8": (lambda: make_zip({**GOOD, "labels.txt": "p/1.jpg\tcaf\xe9\n".encode("latin-1")}), {}, 400, "invalid_archive"),
    "labels_only_comments": (lambda: make_zip({"labels.txt": "# nothing\n\n   \n"}), {}, 400, "invalid_archive"),
    "csv_without_label_column": (lambda: make_zip({"products.csv": "image,name\na.jpg,x\n"}), {}, 400, "invalid_archive"),
    "labels_over_50_mb": (lambda: make_zip({"labels.txt": b"#" * (50 * 1024 * 1024 + 1)}), {}, 400, "invalid_archive"),
    "unpacks_over_the_limit": (lambda: make_zip({**GOOD, "padding.bin": b"\0" * 2_000_000}),
                               {"SHITU_MAX_IMPORT_BYTES": 1_000_000}, 400, "invalid_archive"),
    "upload_over_the_limit": (lambda: make_zip(GOOD), {"SHITU_MAX_IMPORT_UPLOAD_BYTES": 1_000}, 413, "file_too_large"),
    "labels_encrypted": (lambda: encrypted(make_zip(GOOD), "labels.txt"), {}, 400, "invalid_archive"),
    "labels_deflate64": (lambda: compression_method(make_zip(GOOD), "labels.txt", 9), {}, 400, "invalid_archive"),
    "labels_bad_crc": (lambda: bad_crc(make_zip(GOOD), "labels.txt"), {}, 400, "invalid_archive"),
    "labels_corrupt_deflate": (lambda: corrupt_deflate(make_zip({**GOOD, "labels.txt": "p/1.jpg\tRed\n" * 50}), "labels.txt"),
                               {}, 400, "invalid_archive"),
    "member_with_an_empty_name": (member_named_nul, {}, 400, "invalid_archive"),
    "first_byte_missing": (lambda: make_zip({"labels.txt": GOOD["labels.txt"], "p/1.jpg": GOOD["p/1.jpg"]})[1:],
                           {}, 400, "invalid_archive"),
    "csv_field_over_128_kib": (lambda: _csv_zip("image,label\na.jpg," + "x" * 140_000 + "\n"), {}, 400, "invalid_archive"),
    "csv_attributes_nested_deeply": (lambda: _csv_zip('image,label,attributes\na.jpg,x,"' + '{""a"":' * 3000 + "1" + "}" * 3000 + '"\n'),
                                     {}, 400, "invalid_archive"),
}
ARCHIVE_XFAILS: dict[str, str] = {}  # known bugs (strict xfail) go here, with the failing request; none open


def _xfail_where(cases, xfails: dict[str, str]):
    return [pytest.param(case, marks=pytest.mark.xfail(strict=True, reason=xfails[case])) if case in xfails else case
            for case in cases]


def _start_import(client, gallery_id: int, data: bytes, name: str = "gallery.zip"):
    return client.post(f"/api/v1/galleries/{gallery_id}/imports/", {"archive": upload(data, name, "application/zip")},
                       format="multipart")


@pytest.mark.parametrize("case", _xfail_where(sorted(REFUSED_ARCHIVES), ARCHIVE_XFAILS))
def test_bad_archive_is_refused_at_upload(own, settings, case):
    make, overrides, status, code = REFUSED_ARCHIVES[case]
    for name, value in overrides.items():
        setattr(settings, name, value)
    response = _start_import(safe_key_client(own.world, "member"), own.gallery.pk, make())
    assert_error_envelope(response, status=status, code=code)
    assert not ImportJob.unscoped.exists()
    assert_healthy()


def test_archive_with_too_many_entries_is_refused(own, monkeypatch):
    monkeypatch.setattr("galleries.archive.MAX_MEMBERS", 300)
    members = {f"e/{n}.jpg": b"" for n in range(301)}
    members["labels.txt"] = "".join(f"e/{n}.jpg\tx\n" for n in range(301))
    response = _start_import(safe_key_client(own.world, "member"), own.gallery.pk, make_zip(members, method=zipfile.ZIP_STORED))
    assert "limit 300" in assert_error_envelope(response, status=400, code="invalid_archive")["message"]


def test_archive_field_shapes(own):
    client = safe_key_client(own.world, "member")
    url = f"/api/v1/galleries/{own.gallery.pk}/imports/"
    assert_error_envelope(client.post(url, {}, format="multipart"), status=400, code="invalid_request")
    assert_error_envelope(client.post(url, {"archive": "text, not a file"}, format="multipart"), status=400)
    assert_error_envelope(client.post(url, {"archive": base64.b64encode(make_zip(GOOD)).decode()}, format="json"), status=400)


# --- import rows, through the real worker -----------------------------------------------------------------

ROW_CASES = {
    # listed path -> (zip members to add, expected row error code)
    "../../escape.jpg": ({"../../escape.jpg": jpeg_bytes((1, 1, 1))}, "unsafe_path"),
    "/etc/passwd": ({}, "unsafe_path"),
    "p/../../../etc/hosts": ({}, "unsafe_path"),
    "link.jpg": ({}, "symlink"),  # added as a symlink below
    "bomb.jpg": ({"bomb.jpg": b"\0" * 4_000_000}, "zip_bomb"),
    "nested.jpg": ({"nested.jpg": make_zip(GOOD)}, "not_an_image"),
    "missing.jpg": ({}, "missing_file"),
    "folder/": ({"folder/": b""}, "missing_file"),
    "secret.jpg": ({"secret.jpg": jpeg_bytes((3, 3, 3))}, "corrupt_zip_member"),  # flagged encrypted below
    "deflate64.jpg": ({"deflate64.jpg": jpeg_bytes((4, 4, 4))}, "corrupt_zip_member"),
    "badcrc.jpg": ({"badcrc.jpg": jpeg_bytes((5, 5, 5))}, "corrupt_zip_member"),
    "script.jpg": ({"script.jpg": HTML_PAYLOAD}, "not_an_image"),
}
CSV_INJECTION_LABEL = "=cmd|' /C calc'!A0"
UNICODE_LABEL = "农夫 山泉  Spring Water 550 ml"


def _hostile_rows_archive() -> bytes:
    members: dict[str, bytes | str] = {"ok/1.jpg": jpeg_bytes((210, 30, 30)), "ok/2.jpg": jpeg_bytes((30, 170, 60))}
    lines = [f"ok/1.jpg\t{CSV_INJECTION_LABEL}", f"ok/2.jpg\t{UNICODE_LABEL}"]
    for path, (extra, _) in ROW_CASES.items():
        members.update(extra)
        lines.append(f"{path}\t{path} label")
    lines += ["ok/1.jpg\t" + "L" * (10 * 1024 * 1024), "ok/2.jpg\t   "]  # a 10 MB label; an empty one
    members["labels.txt"] = "\n".join(lines) + "\n"
    data = make_zip(members, symlinks={"link.jpg": "/etc/passwd"})
    data = encrypted(data, "secret.jpg")
    data = compression_method(data, "deflate64.jpg", 9)
    return bad_crc(data, "badcrc.jpg")


def _wait_for(job_id: int, timeout: float = 60) -> ImportJob:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = ImportJob.unscoped.get(pk=job_id)
        if job.status in (ImportJob.Status.DONE, ImportJob.Status.FAILED):
            return job
        time.sleep(0.2)
    job = ImportJob.unscoped.get(pk=job_id)
    raise AssertionError(f"import {job_id} never finished: status {job.status}, next_row {job.next_row}/{job.total_rows}")


@pytest.mark.slow
def test_hostile_rows_fail_one_by_one_and_the_rest_imports(tenant_a, celery_worker):
    client = tenant_a.key_client("member")
    gallery = client.post("/api/v1/galleries/", {"name": "Hostile"}, format="json").json()["id"]
    started = _start_import(client, gallery, _hostile_rows_archive())
    assert started.status_code == 202, started.content[:300]
    many = {f"m/{n}.jpg": b"x" for n in range(2000)}
    many["labels.txt"] = "".join(f"m/{n}.jpg\tthing {n}\n" for n in range(2000))
    many_started = _start_import(client, gallery, make_zip(many, method=zipfile.ZIP_STORED))
    assert many_started.status_code == 202

    job = _wait_for(started.json()["id"])
    assert job.status == "done", job.failure_reason
    codes = {error["path"]: error["code"] for error in job.row_errors if error["row"] is not None}
    for path, (_, code) in ROW_CASES.items():
        assert codes.get(path) == code, f"row {path!r}: {codes.get(path)} (wanted {code})"
    reasons = {error["code"] for error in job.row_errors}
    assert {"label_too_long", "missing_label"} <= reasons
    assert all(error["message"] for error in job.row_errors)
    assert (job.imported, job.failed) == (2, len(ROW_CASES) + 2)
    labels = set(Product.unscoped.filter(gallery_id=gallery).values_list("label", flat=True))
    assert {CSV_INJECTION_LABEL, UNICODE_LABEL} <= labels, labels  # stored verbatim and whole
    assert ReferenceImage.unscoped.filter(gallery_id=gallery).count() == 2
    keys = [info.key for info in object_store().list(tenant_prefix(tenant_a.tenant.pk))]
    assert all(key.startswith(tenant_prefix(tenant_a.tenant.pk)) and ".." not in key for key in keys)
    polled = client.get(f"/api/v1/imports/{job.pk}/")
    assert polled.status_code == 200 and polled.json()["failed"] == job.failed

    many_job = _wait_for(many_started.json()["id"], timeout=120)
    assert (many_job.status, many_job.total_rows, many_job.failed, many_job.imported) == ("done", 2000, 2000, 0)
    assert len(many_job.row_errors) == 1000  # the kept errors are capped
    assert_healthy()


def _run_import_here(tenant, data: bytes, monkeypatch) -> ImportJob:
    """Start through the API, then run the job in this process (the worker's own code path, without a worker)."""
    from galleries.imports import import_run

    monkeypatch.setattr("galleries.imports._enqueue", lambda job_id, tenant_id: None)
    gallery = Gallery(tenant=tenant.tenant, name="Rows")
    gallery.save()
    response = _start_import(tenant.key_client("member"), gallery.pk, data)
    assert response.status_code == 202, response.content[:300]
    import_run(job_id=response.json()["id"])
    return ImportJob.unscoped.get(pk=response.json()["id"])


@pytest.mark.parametrize("manifest", [
    ("labels.txt", "a.jpg\tgood label\nb.jpg\tbad\x00label\n"),
    ("products.csv", "image,label,display_name\na.jpg,good label,\nb.jpg,bad label,dis\x00play\n"),
], ids=["labels.txt", "products.csv"])
def test_nul_byte_in_a_label_fails_only_its_row(tenant_a, monkeypatch, manifest):
    name, text = manifest
    data = make_zip({"a.jpg": jpeg_bytes((1, 2, 3)), "b.jpg": jpeg_bytes((3, 2, 1)), name: text})
    job = _run_import_here(tenant_a, data, monkeypatch)
    assert (job.status, job.imported, job.failed) == ("done", 1, 1), job.row_errors


@pytest.mark.parametrize("damage", ["deflate", "lzma", "negative_offset"])
def test_corrupt_member_stream_fails_only_its_row(tenant_a, monkeypatch, damage):
    method = zipfile.ZIP_LZMA if damage == "lzma" else zipfile.ZIP_DEFLATED
    members = {"b.jpg": jpeg_bytes((3, 2, 1)) + bytes(4000), "a.jpg": jpeg_bytes((1, 2, 3)), "labels.txt": "a.jpg\tok\nb.jpg\tbroken\n"}
    data = make_zip(members, method=method)
    if damage == "deflate":
        data = corrupt_deflate(data, "b.jpg")
    elif damage == "lzma":
        data = _patch_member(data, "b.jpg", lambda raw, offset, central: None if central else raw.__setitem__(
            slice(offset + 30 + 5 + 4 + 8, offset + 30 + 5 + 4 + 24), b"\xff" * 16))
    else:
        data = member_before_the_start(data, still_readable=["a.jpg", "labels.txt"])
    job = _run_import_here(tenant_a, data, monkeypatch)
    assert (job.status, job.imported, job.failed) == ("done", 1, 1), job.row_errors
    assert job.row_errors[0]["code"] == "corrupt_zip_member"


def test_row_errors_stay_small_whatever_the_manifest(tenant_a, monkeypatch):
    data = make_zip({"a.jpg": jpeg_bytes((1, 2, 3)), "labels.txt": "a.jpg\tok\n" + "P" * (10 * 1024 * 1024) + "\n"})
    job = _run_import_here(tenant_a, data, monkeypatch)
    assert job.failed == 1
    assert len(json.dumps(job.row_errors)) < 10_000


def test_csv_injection_labels_are_stored_verbatim_and_there_is_no_csv_export(tenant_a, monkeypatch):
    """Labels like `=cmd|...` are data, kept exactly; they only matter where a CSV is produced, and no route produces
    one today (checked over every route's responses' content types). A future export must prefix such cells."""
    rows = [("a.jpg", CSV_INJECTION_LABEL, "@SUM(1+1)*cmd|' /C calc'!A0", "+1-1", '{"k": "-2+3"}'),
            ("b.jpg", UNICODE_LABEL, "\tTab", "\r=1", "")]
    text = "image,label,display_name,sku,attributes\n" + "".join(
        ",".join('"' + cell.replace('"', '""') + '"' for cell in row) + "\n" for row in rows)
    data = make_zip({"a.jpg": jpeg_bytes((1, 2, 3)), "b.jpg": jpeg_bytes((3, 2, 1)), "products.csv": text})
    job = _run_import_here(tenant_a, data, monkeypatch)
    assert (job.status, job.imported, job.failed) == ("done", 2, 0), job.row_errors
    stored = {p.label: p for p in Product.unscoped.filter(tenant=tenant_a.tenant)}
    assert stored[CSV_INJECTION_LABEL].display_name == "@SUM(1+1)*cmd|' /C calc'!A0"
    assert stored[CSV_INJECTION_LABEL].sku == "+1-1" and stored[CSV_INJECTION_LABEL].attributes == {"k": "-2+3"}
    assert UNICODE_LABEL in stored
    client = safe_session_client(tenant_a)
    for route in LIST_ROUTES:
        response = client.get(reverse(route.name))
        assert "csv" not in response.get("Content-Type", ""), f"{route} now exports CSV: add formula neutralisation tests"


# --- request bodies: size, syntax, shape ----------------------------------------------------------------

def test_json_body_over_the_request_limit_is_a_clear_4xx(own):
    body = json.dumps({"name": "x", "description": "d" * (django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1024)})
    response = safe_key_client(own.world).generic("POST", "/api/v1/galleries/", body, content_type="application/json")
    assert_error_envelope(response)
    assert not Gallery.unscoped.filter(name="x").exists()


def test_deeply_nested_json_is_a_clear_4xx(own):
    body = "[" * 100_000 + "]" * 100_000
    assert_error_envelope(safe_key_client(own.world).generic("POST", "/api/v1/galleries/", body,
                                                             content_type="application/json"), status=400)


@pytest.mark.parametrize("body,content_type,status,code", [
    ("{bad json", "application/json", 400, "malformed_request"),
    ('{"name": "x",}', "application/json", 400, "malformed_request"),
    ('{"name": NaN}', "application/json", 400, "malformed_request"),
    ('{"name": "\\ud800"}', "application/json", None, None),
    ("\xff\xfe{}", "application/json", 400, "malformed_request"),
    ("1" * 5000, "application/json", 400, "malformed_request"),
    ("[]", "application/json", 400, "invalid_request"),
    ('"just a string"', "application/json", 400, "invalid_request"),
    ("null", "application/json", 400, "invalid_request"),
    ("name=x", "text/plain", 415, "unsupported_media_type"),
    ("<xml/>", "application/xml", 415, "unsupported_media_type"),
    ("--b\r\n", "multipart/form-data", 400, None),
])
def test_malformed_bodies_are_clear_4xx(own, body, content_type, status, code):
    for url in ("/api/v1/galleries/", "/api/v1/products/", "/api/v1/recognitions/", "/api/v1/fine-tune-jobs/"):
        response = safe_key_client(own.world).generic("POST", url, body.encode("utf-8", "surrogatepass"), content_type=content_type)
        assert_error_envelope(response, status=status, code=code)
    assert_healthy()


# --- wrong types for every writable field -------------------------------------------------------------------

BAD_VALUES = [None, "", " ", [], {}, [[[[[]]]]], -1, 0, 2**63, -(2**63) - 1, 10**30, 1.5, 1e308, True, False,
              "\u0000", "x\u0000y", {"\u0000": "\u0000"}, {"k": "\u0000"}, "x" * 10_000, "https://example.com/" + "a" * 500,
              "javascript:alert(1)", "../../etc/passwd", "' OR 1=1 --", {"$gt": ""}, ["a", 1, None], "1e999", "NaN",
              "\U0001F600" * 50, "\u202e\u0645"]


def _image_b64() -> str:
    return base64.b64encode(jpeg_bytes((12, 34, 56))).decode()


def _write_endpoints(own: Own) -> dict[str, tuple]:
    """name -> (method, url, serializer class, a valid body for every other field)."""
    from galleries.serializers import GallerySerializer, ProductSerializer
    from recognition.serializers import FeedbackSerializer, RecognitionRequestSerializer
    from shitu_platform.tenancy.serializers import ApiKeyCreateSerializer
    from training.serializers import FineTuneJobSerializer, PromoteSerializer

    return {
        "gallery-create": ("post", "/api/v1/galleries/", GallerySerializer, {"name": "Fresh {n}", "description": ""}),
        "gallery-update": ("patch", f"/api/v1/galleries/{own.gallery.pk}/", GallerySerializer, {}),
        "gallery-replace": ("put", f"/api/v1/galleries/{own.gallery.pk}/", GallerySerializer, {"name": "Drinks 2"}),
        "product-create": ("post", "/api/v1/products/", ProductSerializer, {"gallery": own.gallery.pk, "label": "Fresh {n}"}),
        "product-update": ("patch", f"/api/v1/products/{own.product.pk}/", ProductSerializer, {}),
        "recognition-create": ("post", "/api/v1/recognitions/", RecognitionRequestSerializer,
                               {"image_base64": _image_b64(), "run_async": True}),
        "recognition-feedback": ("post", f"/api/v1/recognitions/{own.recognition.public_id}/feedback/", FeedbackSerializer,
                                 {"object": 0, "verdict": "correct"}),
        "fine-tune-create": ("post", "/api/v1/fine-tune-jobs/", FineTuneJobSerializer, {"gallery": own.gallery.pk, "epochs": 1}),
        "fine-tune-promote": ("post", f"/api/v1/fine-tune-jobs/{own.fine_tune_job.pk}/promote/", PromoteSerializer, {}),
        "api-key-create": ("post", "/api/v1/api-keys/", ApiKeyCreateSerializer, {"name": "k", "role": "viewer"}),
    }


def _writable_fields(serializer_class) -> list[str]:
    return sorted(name for name, field in serializer_class().fields.items() if not field.read_only)


WRITE_CASES = [
    (endpoint, field)
    for endpoint, serializer_path in [
        ("gallery-create", "galleries.serializers.GallerySerializer"),
        ("gallery-update", "galleries.serializers.GallerySerializer"),
        ("gallery-replace", "galleries.serializers.GallerySerializer"),
        ("product-create", "galleries.serializers.ProductSerializer"),
        ("product-update", "galleries.serializers.ProductSerializer"),
        ("recognition-create", "recognition.serializers.RecognitionRequestSerializer"),
        ("recognition-feedback", "recognition.serializers.FeedbackSerializer"),
        ("fine-tune-create", "training.serializers.FineTuneJobSerializer"),
        ("fine-tune-promote", "training.serializers.PromoteSerializer"),
        ("api-key-create", "shitu_platform.tenancy.serializers.ApiKeyCreateSerializer"),
    ]
    for field in _writable_fields(import_string(serializer_path))
]
WRITE_XFAILS = {}  # known bugs (strict xfail) go here, with the failing request; none open


@pytest.mark.parametrize("endpoint,field", [
    pytest.param(e, f, marks=pytest.mark.xfail(strict=True, reason=WRITE_XFAILS[(e, f)])) if (e, f) in WRITE_XFAILS else (e, f)
    for e, f in WRITE_CASES
], ids=[f"{e}.{f}" for e, f in WRITE_CASES])
def test_wrong_types_for_every_field_are_never_a_500(own, no_inference_worker, endpoint, field):
    method, url, _, valid = _write_endpoints(own)[endpoint]
    client = safe_key_client(own.world, "admin")
    problems = []
    for number, value in enumerate(BAD_VALUES + ["Snacks", "Red Can 330 ml"]):  # the last two: names already taken
        body = {name: (v.format(n=number) if isinstance(v, str) else v) for name, v in valid.items()}
        body[field] = value
        response = getattr(client, method)(url, body, format="json")
        if response.status_code >= 500 or response.status_code == 403:
            problems.append(f"{method.upper()} {url} {field}={value!r:.60}: {response.status_code}")
        elif response.status_code >= 400:
            try:
                assert_error_envelope(response)
            except AssertionError as error:
                problems.append(f"{method.upper()} {url} {field}={value!r:.60}: {error}")
    assert not problems, "\n".join(problems)
    assert_healthy()


DASHBOARD_FORMS = {
    "dashboard:galleries": ("name", "description"),
    "dashboard:api-keys": ("name", "role"),
    "dashboard:switch-tenant": ("tenant_id",),
    "dashboard:review-bulk-confirm": ("review", "query"),
}
FORM_VALUES = ["", "\x00", "x\x00y", "x" * 10_000, "-1", "99999999999999999999", "abc", "1e999", "../../admin/",
               "https://evil.example/", "//evil.example", "<script>alert(1)</script>", "\U0001F600", "%00"]


@pytest.mark.parametrize("route_name", sorted(DASHBOARD_FORMS))
def test_dashboard_forms_refuse_garbage_without_500(own, route_name):
    client = safe_session_client(own.world)
    problems = []
    for field in DASHBOARD_FORMS[route_name]:
        for value in FORM_VALUES:
            response = client.post(reverse(route_name), {field: value, **({"name": "n"} if field == "role" else {})})
            location = response.get("Location", "")
            if response.status_code >= 500 or response.status_code == 403:
                problems.append(f"POST {reverse(route_name)} {field}={value!r:.40}: {response.status_code}")
            elif location and not location.startswith("/"):
                problems.append(f"POST {reverse(route_name)} {field}={value!r:.40}: redirects off-site to {location}")
    assert not problems, "\n".join(problems)


def test_review_actions_refuse_garbage_without_500(own):
    from recognition.models import MatchReview

    detected = DetectedObject.unscoped.get(recognition=own.recognition)
    review = MatchReview(tenant=own.world.tenant, detected_object=detected, gallery=own.gallery, reason="flagged")
    review.save()
    client = safe_session_client(own.world)
    for value in FORM_VALUES:
        for action in ("review-relabel", "review-confirm", "review-unknown"):
            response = client.post(reverse(f"dashboard:{action}", args=[review.pk]), {"product": value, "query": value})
            assert response.status_code in (302, 404), f"{action} product={value!r:.40}: {response.status_code}"
            assert response["Location"].startswith("/") if response.status_code == 302 else True


# --- query strings on every route ---------------------------------------------------------------------------

FILTER_PARAMS = ["gallery", "product", "label", "attr", "status", "q", "size", "reason", "score", "since", "until",
                 "attention", "ordering", "search", "verdict", "tenant"]
QUERY_VALUES = ["%00", "-1", "99999999999999999999", "abc", "%27%22%3C%3E", "a__regex:(", "x__contains:y", "__:x", ":",
                "x" * 3000, "2026-99-99", "%ff%fe", "1e999", "NaN"]
QUERY_XFAILS = {}  # known bugs (strict xfail) go here, with the failing request; none open


# Routes whose hostile requests (42-84 then; 28-56 since page and offset share one) took over 2 s in a `-m "not slow"` run at load 4 (whole dashboard pages)
QUERY_SLOW = {"dashboard:home", "dashboard:gallery", "dashboard:gallery-product", "dashboard:gallery-delete",
              "dashboard:review-queue", "dashboard:finetune-jobs", "member-list"}


def _query_routes() -> list:
    routes = [r for r in LIST_ROUTES if r.name not in ("openapi-schema", "openapi-docs")]
    return routes + [r for r in OBJECT_ROUTES if "get" in r.methods]


def _query_cases() -> list:
    cases = []
    for route in _query_routes():
        marks = [pytest.mark.slow] if route.name in QUERY_SLOW else []
        if route.name in QUERY_XFAILS:
            marks.append(pytest.mark.xfail(strict=True, reason=QUERY_XFAILS[route.name]))
        cases.append(pytest.param(route, marks=marks))
    assert QUERY_SLOW <= {route.name for route in _query_routes()}, "a slow-marked route is gone: update QUERY_SLOW"
    return cases


@pytest.fixture()
def rows_of_a(tenant_a):
    from tests.security.conftest import make_tenant_objects

    return make_tenant_objects(tenant_a, "ACMEVISIBLE")


def _route_url(route, objects) -> str:
    return reverse(route.name, kwargs=url_kwargs(route, objects)) if route.kwargs else reverse(route.name)


@pytest.mark.parametrize("route", _query_cases(), ids=lambda route: route.name)
def test_hostile_query_strings_are_never_a_500(rows_of_a, route):
    url = _route_url(route, rows_of_a)
    clients = [safe_session_client(rows_of_a.world)] + ([safe_key_client(rows_of_a.world)] if route.is_api else [])
    problems = []
    for client in clients:
        for value in QUERY_VALUES:
            # A view reads one paginator's parameters (page, or limit/offset), so both go in one request.
            for query in ("&".join(f"{param}={value}" for param in FILTER_PARAMS), f"page={value}&offset={value}"):
                response = client.get(f"{url}?{query}")
                if response.status_code >= 500 or response.status_code == 403:
                    problems.append(f"GET {url}?{query[:80]}: {response.status_code}")
    assert not problems, "\n".join(problems)


PAGINATED = [r for r in LIST_ROUTES if r.is_api and "LimitOffset" in str(getattr(r.view_class, "pagination_class", ""))]


def test_huge_page_limits_are_never_a_500(rows_of_a):
    assert len(PAGINATED) >= 8
    client = safe_key_client(rows_of_a.world)
    problems = []
    for route in PAGINATED:
        url = _route_url(route, rows_of_a)
        for query in ("limit=99999999999999999999", "limit=9223372036854775807", "offset=99999999999999999999&limit=5"):
            response = client.get(f"{url}?{query}")
            if response.status_code >= 500:
                problems.append(f"GET {url}?{query}: {response.status_code}")
    assert not problems, "\n".join(problems)


# --- headers ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("header,value", [
    ("HTTP_AUTHORIZATION", "Api-Key shitu_" + "é" * 60),
    ("HTTP_AUTHORIZATION", "Api-Key " + "x" * 10_000),
    ("HTTP_AUTHORIZATION", "Api-Key shitu_" + "a" * 10_000),
    ("HTTP_AUTHORIZATION", "Bearer shitu_"),
    ("HTTP_AUTHORIZATION", "Api-Key shitu_' OR '1'='1' --aaaaaaaaaaaaaaaaaaaaaaa"),
    ("HTTP_AUTHORIZATION", "Basic YWRtaW46YWRtaW4="),
    ("HTTP_X_API_KEY", "shitu_%00%00" + "a" * 40),
    ("HTTP_X_API_KEY", "\U0001F600" * 30),
    ("HTTP_AUTHORIZATION", "Api-Key shitu_\x00" + "a" * 40),
    ("HTTP_X_API_KEY", "shitu_\x00" + "a" * 40),
])
def test_garbage_api_keys_are_401(tenant_a, header, value):
    response = SafeClient(APIClient()).get("/api/v1/galleries/", **{header: value})
    assert_error_envelope(response, status=401)
    assert_healthy()


def test_api_routes_asked_for_html_with_a_key_are_never_a_500(rows_of_a):
    client = safe_key_client(rows_of_a.world)
    problems = []
    for route in [r for r in LIST_ROUTES if r.is_api]:
        response = client.get(reverse(route.name), HTTP_ACCEPT="text/html")
        if response.status_code >= 500:
            problems.append(f"GET {reverse(route.name)} Accept: text/html with an API key: {response.status_code}")
    assert not problems, "\n".join(problems)
