"""One behavioural suite for every ObjectStore backend, plus each backend's own guarantees."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import time
import urllib.request
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from shitu_platform.storage import (
    FilesystemObjectStore,
    InvalidObjectKey,
    ObjectNotFound,
    ObjectStore,
    ObjectStoreError,
    S3ObjectStore,
    StorageConfigError,
    StorageUnavailable,
    object_store_from_config,
    tenant_key,
    tenant_prefix,
)

MakeS3Store = Callable[..., S3ObjectStore]
BINARY = bytes(range(256)) * 64 + os.urandom(4096)

TRAVERSAL_KEYS = [
    "../escape",
    "a/../../escape",
    "a/..",
    "./a",
    "/etc/passwd",
    "a//b",
    "a/",
    "a\\..\\b",
    "a\x00b",
    "",
    "k" * 901,
]


# -- round trips --------------------------------------------------------------------------------


def test_put_get_round_trip_keeps_every_byte(store: ObjectStore) -> None:
    info = store.put("images/raw.bin", BINARY)

    assert store.get("images/raw.bin") == BINARY
    assert info.key == "images/raw.bin"
    assert info.size == len(BINARY)
    assert info.etag == hashlib.md5(BINARY).hexdigest()


def test_streamed_upload_of_unknown_length_round_trips(store: ObjectStore) -> None:
    payload = os.urandom(11 * 1024 * 1024)  # over one 10 MB part: multipart on S3

    info = store.put("models/big.bin", io.BytesIO(payload))

    assert info.size == len(payload)
    assert store.stat("models/big.bin").size == len(payload)
    with store.open("models/big.bin") as stream:
        chunks = list(iter(lambda: stream.read(1024 * 1024), b""))
    assert b"".join(chunks) == payload


def test_put_reads_only_the_given_length_of_a_stream(store: ObjectStore) -> None:
    store.put("a/part.bin", io.BytesIO(b"0123456789"), length=4)

    assert store.get("a/part.bin") == b"0123"


def test_stream_shorter_than_length_stores_nothing(store: ObjectStore) -> None:
    with pytest.raises(ObjectStoreError, match="ended after 3 of 10"):
        store.put("a/short.bin", io.BytesIO(b"abc"), length=10)

    assert not store.exists("a/short.bin")


def test_bytes_with_wrong_length_are_rejected(store: ObjectStore) -> None:
    with pytest.raises(ValueError):
        store.put("a/x.bin", b"abc", length=5)


def test_put_replaces_an_existing_object(store: ObjectStore) -> None:
    store.put("a/x.txt", b"first version")
    store.put("a/x.txt", b"second")

    assert store.get("a/x.txt") == b"second"
    assert store.stat("a/x.txt").size == 6


def test_stat_reports_size_etag_and_utc_time(store: ObjectStore) -> None:
    store.put("a/x.txt", b"hello", content_type="text/plain")

    info = store.stat("a/x.txt")

    assert (info.key, info.size, info.etag) == ("a/x.txt", 5, hashlib.md5(b"hello").hexdigest())
    assert isinstance(info.last_modified, datetime) and info.last_modified.utcoffset() == timedelta(0)


# -- listing ------------------------------------------------------------------------------------


def test_list_returns_only_the_prefix_sorted_by_key(store: ObjectStore) -> None:
    # '.' < '/' < '0' in byte order: a folder's keys sort between its siblings "a.b" and "a0".
    keys = ["p/a0", "p/a/x", "p/a.b", "p/a/y/z", "p/b", "q/a", "pp/a"]
    for key in keys:
        store.put(key, key.encode())

    listed = list(store.list("p/"))

    assert [info.key for info in listed] == ["p/a.b", "p/a/x", "p/a/y/z", "p/a0", "p/b"]
    assert [info.size for info in listed] == [len(info.key) for info in listed]
    assert all(info.etag == hashlib.md5(info.key.encode()).hexdigest() for info in listed)


def test_list_prefix_may_end_inside_a_name(store: ObjectStore) -> None:
    for key in ["p/apple", "p/apricot/1", "p/banana", "pa"]:
        store.put(key, b"x")

    assert [info.key for info in store.list("p/ap")] == ["p/apple", "p/apricot/1"]
    assert [info.key for info in store.list("p")] == ["p/apple", "p/apricot/1", "p/banana", "pa"]


def test_list_everything_and_nothing(store: ObjectStore) -> None:
    store.put("b/1", b"x")
    store.put("a/1", b"x")

    assert [info.key for info in store.list("")] == ["a/1", "b/1"]
    assert list(store.list("missing/")) == []


def test_list_rejects_traversal_prefix(store: ObjectStore) -> None:
    with pytest.raises(InvalidObjectKey):
        store.list("../")
    with pytest.raises(InvalidObjectKey):
        store.list("a/../..")


# -- delete / missing ---------------------------------------------------------------------------


def test_delete_is_idempotent(store: ObjectStore) -> None:
    store.put("a/x", b"x")

    store.delete("a/x")
    store.delete("a/x")
    store.delete("never/existed")

    assert not store.exists("a/x")
    assert list(store.list("a/")) == []


def test_missing_key_raises_object_not_found(store: ObjectStore) -> None:
    assert not store.exists("no/such/key")
    with pytest.raises(ObjectNotFound):
        store.get("no/such/key")
    with pytest.raises(ObjectNotFound):
        store.open("no/such/key")
    with pytest.raises(ObjectNotFound):
        store.stat("no/such/key")


def test_a_folder_is_not_an_object(store: ObjectStore) -> None:
    store.put("folder/inner", b"x")

    assert not store.exists("folder")
    with pytest.raises(ObjectNotFound):
        store.get("folder")


@pytest.mark.parametrize("key", TRAVERSAL_KEYS)
def test_unsafe_keys_are_rejected_everywhere(store: ObjectStore, key: str) -> None:
    for operation in (
        lambda: store.put(key, b"x"),
        lambda: store.get(key),
        lambda: store.open(key),
        lambda: store.stat(key),
        lambda: store.exists(key),
        lambda: store.delete(key),
        lambda: store.presigned_get_url(key),
    ):
        with pytest.raises(InvalidObjectKey):
            operation()


# -- tenancy ------------------------------------------------------------------------------------


def test_tenant_listing_never_returns_another_tenants_keys(store: ObjectStore) -> None:
    for tenant_id in (1, 2, 10):
        store.put(tenant_key(tenant_id, "galleries", "7", "img.jpg"), b"x")
        store.put(tenant_key(tenant_id, "queries", "q.jpg"), b"x")

    tenant_one = [info.key for info in store.list(tenant_prefix(1))]

    assert tenant_one == ["tenants/1/galleries/7/img.jpg", "tenants/1/queries/q.jpg"]


def test_tenant_key_builds_namespaced_keys() -> None:
    assert tenant_key(1, "galleries", "7", "a.jpg") == "tenants/1/galleries/7/a.jpg"
    assert tenant_key("acme-co", "x") == "tenants/acme-co/x"
    assert tenant_prefix(42) == "tenants/42/"


@pytest.mark.parametrize(
    ("tenant_id", "parts"),
    [
        (1, ("a/b",)),
        (1, ("..",)),
        (1, (".",)),
        (1, ("",)),
        (1, ("a\\b",)),
        (1, ()),
        ("../2", ("x",)),
        ("1/2", ("x",)),
        (-1, ("x",)),
        (True, ("x",)),
        (1.5, ("x",)),
    ],
)
def test_tenant_key_rejects_parts_that_could_cross_tenants(tenant_id: object, parts: tuple[str, ...]) -> None:
    with pytest.raises(InvalidObjectKey):
        tenant_key(tenant_id, *parts)  # type: ignore[arg-type]


# -- presigned URLs -----------------------------------------------------------------------------


def test_presigned_url_downloads_the_bytes_over_plain_http(s3_store: S3ObjectStore) -> None:
    key = tenant_key(3, "queries", "photo 1.jpg")
    s3_store.put(key, BINARY, content_type="image/jpeg")

    url = s3_store.presigned_get_url(key, expires=timedelta(minutes=1))
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.read() == BINARY


def test_filesystem_presigned_url_verifies_and_rejects_tampering(filesystem_store: FilesystemObjectStore) -> None:
    key = tenant_key(3, "queries", "photo 1.jpg")
    filesystem_store.put(key, b"x")

    url = filesystem_store.presigned_get_url(key, expires=timedelta(minutes=1))
    parts = urlsplit(url)
    query = {name: values[0] for name, values in parse_qs(parts.query).items()}
    url_key = unquote(parts.path.removeprefix("/media/signed/"))
    expires, signature = query["expires"], query["signature"]

    assert url_key == key
    assert filesystem_store.verify_presigned(url_key, expires, signature)
    tampered = ("0" if signature[0] != "0" else "1") + signature[1:]
    assert not filesystem_store.verify_presigned(url_key, expires, tampered)
    assert not filesystem_store.verify_presigned(tenant_key(4, "queries", "photo 1.jpg"), expires, signature)
    assert not filesystem_store.verify_presigned(url_key, str(int(expires) + 3600), signature)
    assert not filesystem_store.verify_presigned(url_key, expires, signature, now=int(expires) + 1)
    assert not filesystem_store.verify_presigned(url_key, "not-a-number", signature)
    assert not filesystem_store.verify_presigned(url_key, expires, "é" * 64)


def test_filesystem_presigned_url_is_bound_to_the_secret(tmp_path: Path, url_secret: bytes) -> None:
    first = FilesystemObjectStore(tmp_path, url_secret=url_secret)
    second = FilesystemObjectStore(tmp_path, url_secret=b"another-secret-0123456789")
    query = parse_qs(urlsplit(first.presigned_get_url("a/b")).query)

    assert not second.verify_presigned("a/b", query["expires"][0], query["signature"][0])


@pytest.mark.parametrize("expires", [timedelta(0), timedelta(seconds=-5), timedelta(days=8)])
def test_presigned_expiry_must_be_between_a_second_and_a_week(store: ObjectStore, expires: timedelta) -> None:
    with pytest.raises(ValueError):
        store.presigned_get_url("a/b", expires=expires)


# -- readiness and failures ---------------------------------------------------------------------


def test_ping_and_ensure_ready_on_a_healthy_store(store: ObjectStore) -> None:
    store.ensure_ready()  # idempotent
    store.ping()


def test_filesystem_ping_fails_without_root(tmp_path: Path, url_secret: bytes) -> None:
    store = FilesystemObjectStore(tmp_path / "not-yet", url_secret=url_secret)

    with pytest.raises(StorageUnavailable):
        store.ping()
    store.ensure_ready()
    store.ping()


def test_s3_ping_fails_when_bucket_is_missing(s3_endpoint: str, make_s3_store: MakeS3Store) -> None:
    store = make_s3_store(s3_endpoint)

    with pytest.raises(StorageUnavailable, match="does not exist"):
        store.ping()
    with pytest.raises(StorageUnavailable):
        store.put("a/b", b"x")
    store.ensure_ready()
    store.ping()


def test_unreachable_endpoint_fails_fast_with_storage_unavailable(make_s3_store: MakeS3Store, free_port: int) -> None:
    store = make_s3_store(f"127.0.0.1:{free_port}")  # nothing listens there

    started = time.monotonic()
    for operation in (store.ping, lambda: store.get("a/b"), lambda: store.put("a/b", b"x"), store.ensure_ready):
        with pytest.raises(StorageUnavailable, match="unreachable"):
            operation()
    with pytest.raises(StorageUnavailable):
        list(store.list("a/"))

    assert time.monotonic() - started < 5


def test_silent_endpoint_times_out_with_storage_unavailable(make_s3_store: MakeS3Store) -> None:
    # Accepts TCP (kernel backlog) but never answers: only the read timeout can save us.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        store = make_s3_store(f"127.0.0.1:{silent.getsockname()[1]}", read_timeout=0.5)

        started = time.monotonic()
        with pytest.raises(StorageUnavailable):
            store.ping()

    assert time.monotonic() - started < 5


# -- filesystem-specific guarantees -------------------------------------------------------------


def test_failed_write_keeps_the_old_object_and_leaves_no_temp_file(filesystem_store: FilesystemObjectStore) -> None:
    filesystem_store.put("a/x", b"old")

    class BrokenStream(io.RawIOBase):
        def __init__(self) -> None:
            self.calls = 0

        def read(self, size: int = -1) -> bytes:
            self.calls += 1
            if self.calls > 1:
                raise OSError("disk went away")
            return b"partial"

    with pytest.raises(OSError, match="disk went away"):
        filesystem_store.put("a/x", BrokenStream())

    assert filesystem_store.get("a/x") == b"old"
    assert sorted(path.name for path in (filesystem_store.root / "a").iterdir()) == ["x"]


def test_leftover_temp_files_are_invisible(filesystem_store: FilesystemObjectStore) -> None:
    filesystem_store.put("a/x", b"x")
    (filesystem_store.root / "a" / ".x.abc123.partial").write_bytes(b"half")  # as a crash would leave

    assert [info.key for info in filesystem_store.list("a/")] == ["a/x"]
    with pytest.raises(InvalidObjectKey):
        filesystem_store.get("a/.x.abc123.partial")


def test_symlink_out_of_root_is_rejected(filesystem_store: FilesystemObjectStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    (filesystem_store.root / "link").symlink_to(outside)

    with pytest.raises(InvalidObjectKey):
        filesystem_store.get("link/secret")
    with pytest.raises(InvalidObjectKey):
        filesystem_store.list("link/")


def test_filesystem_refuses_a_key_that_is_both_object_and_folder(filesystem_store: FilesystemObjectStore) -> None:
    # S3 allows "a" and "a/b" side by side; a directory tree cannot, so say so instead of corrupting.
    filesystem_store.put("a", b"file")
    filesystem_store.put("b/c", b"file")

    with pytest.raises(ObjectStoreError, match="below an existing object"):
        filesystem_store.put("a/b", b"x")
    with pytest.raises(ObjectStoreError, match="prefix of existing objects"):
        filesystem_store.put("b", b"x")
    assert filesystem_store.get("a") == b"file"
    assert [info.key for info in filesystem_store.list("b")] == ["b/c"]


def test_filesystem_etag_survives_without_xattr(filesystem_store: FilesystemObjectStore) -> None:
    (filesystem_store.root / "hand").mkdir()
    (filesystem_store.root / "hand" / "placed").write_bytes(b"by hand")

    assert filesystem_store.stat("hand/placed").etag == hashlib.md5(b"by hand").hexdigest()


def test_filesystem_requires_a_real_url_secret(tmp_path: Path) -> None:
    with pytest.raises(StorageConfigError):
        FilesystemObjectStore(tmp_path, url_secret=b"short")


# -- configuration ------------------------------------------------------------------------------


def test_config_builds_a_filesystem_store(tmp_path: Path) -> None:
    store = object_store_from_config(
        {"STORAGE_BACKEND": "filesystem", "STORAGE_ROOT": str(tmp_path), "STORAGE_URL_SECRET": "s" * 32}
    )

    assert isinstance(store, FilesystemObjectStore)
    assert store.root == tmp_path.resolve()


def test_config_builds_an_s3_store_from_url_or_host(s3_endpoint: str) -> None:
    base = {"STORAGE_BACKEND": "s3", "S3_ACCESS_KEY": "testing", "S3_SECRET_KEY": "testing", "S3_REGION": ""}
    for endpoint in (s3_endpoint, f"http://{s3_endpoint}"):
        store = object_store_from_config({**base, "S3_ENDPOINT": endpoint, "S3_BUCKET": "config-bucket"})
        assert isinstance(store, S3ObjectStore)
        store.ensure_ready()
        store.put("a/b", b"via config")
        assert store.get("a/b") == b"via config"


@pytest.mark.parametrize(
    "config",
    [
        {"STORAGE_BACKEND": "ftp"},
        {"STORAGE_BACKEND": "filesystem", "STORAGE_ROOT": "/tmp/x"},
        {"STORAGE_BACKEND": "s3", "S3_ENDPOINT": "h:9000", "S3_ACCESS_KEY": "k", "S3_SECRET_KEY": "s"},
        {
            "STORAGE_BACKEND": "s3",
            "S3_ENDPOINT": "https://h:9000",
            "S3_SECURE": "false",
            "S3_ACCESS_KEY": "k",
            "S3_SECRET_KEY": "s",
            "S3_BUCKET": "b-1",
        },
        {"STORAGE_BACKEND": "s3", "S3_ENDPOINT": "h:9000", "S3_ACCESS_KEY": "k", "S3_SECRET_KEY": "s", "S3_BUCKET": "B"},
        {"STORAGE_BACKEND": "s3", "S3_ENDPOINT": "h:9", "S3_ACCESS_KEY": "k", "S3_SECRET_KEY": "s", "S3_BUCKET": "b-1", "S3_SECURE": "maybe"},
    ],
)
def test_bad_config_fails_at_startup(config: dict[str, str]) -> None:
    with pytest.raises(StorageConfigError):
        object_store_from_config(config)
