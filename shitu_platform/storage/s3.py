"""Object store on S3 or MinIO through the minio SDK, with errors mapped to the platform's types."""

from __future__ import annotations

import io
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import BinaryIO
from urllib.parse import urlsplit

import certifi
import urllib3
from minio import Minio
from minio.error import InvalidResponseError, S3Error, ServerError
from minio.helpers import check_bucket_name

from .base import (
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    ObjectStoreError,
    StorageConfigError,
    StorageUnavailable,
    check_presign_expiry,
    validate_key,
    validate_prefix,
)

STREAM_PART_SIZE = 10 * 1024 * 1024  # multipart part size when a stream's length is unknown
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchObject", "ResourceNotFound"})
_UNAVAILABLE_CODES = frozenset(
    {"NoSuchBucket", "SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "RequestTimeTooSkewed"}
)
_BUCKET_TAKEN_CODES = frozenset({"BucketAlreadyOwnedByYou", "BucketAlreadyExists"})
# What a dead endpoint, a dropped connection or a stuck server raises once urllib3's retries are spent.
_NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    urllib3.exceptions.HTTPError,
    ConnectionError,
    TimeoutError,
    socket.gaierror,
)


class S3ObjectStore(ObjectStore):
    """One bucket on an S3-protocol server; fails fast (seconds, not minutes) when the server is away."""

    def __init__(
        self,
        *,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        secure: bool = False,
        region: str | None = None,
        connect_timeout: float = 3.0,
        read_timeout: float = 30.0,
    ) -> None:
        host, secure = split_endpoint(endpoint, secure)
        try:
            check_bucket_name(bucket, strict=True)
        except ValueError as exc:
            raise StorageConfigError(f"invalid S3 bucket name {bucket!r}") from exc
        self._endpoint = host
        self._bucket = bucket
        try:
            self._client = Minio(
                host,
                access_key=access_key,
                secret_key=secret_key,
                secure=secure,
                region=region or None,
                http_client=_http_client(connect_timeout=connect_timeout, read_timeout=read_timeout),
            )
        except ValueError as exc:
            raise StorageConfigError(f"invalid S3 endpoint {endpoint!r}: {exc}") from exc

    @property
    def bucket(self) -> str:
        return self._bucket

    def __repr__(self) -> str:
        return f"S3ObjectStore(endpoint={self._endpoint!r}, bucket={self._bucket!r})"

    # -- writes -------------------------------------------------------------------------------

    def put(
        self,
        key: str,
        data: bytes | BinaryIO,
        *,
        content_type: str = "application/octet-stream",
        length: int | None = None,
    ) -> ObjectInfo:
        validate_key(key)
        if isinstance(data, (bytes, bytearray, memoryview)):
            if length is not None and length != len(data):
                raise ValueError(f"length {length} does not match {len(data)} bytes of data")
            length = len(data)
            reader = _CountingReader(io.BytesIO(data))
        else:
            reader = _CountingReader(data)
        with self._translated(key):
            try:
                result = self._client.put_object(
                    self._bucket,
                    key,
                    reader,
                    -1 if length is None else length,
                    content_type=content_type,
                    part_size=STREAM_PART_SIZE if length is None else 0,
                )
            except OSError as exc:
                # minio raises a bare IOError when a stream is shorter than the length promised.
                if isinstance(exc, _NETWORK_ERRORS) or length is None or reader.bytes_read >= length:
                    raise
                raise ObjectStoreError(f"stream ended after {reader.bytes_read} of {length} bytes") from exc
        return ObjectInfo(key=key, size=reader.bytes_read, etag=_clean_etag(result.etag), last_modified=None)

    def delete(self, key: str) -> None:
        validate_key(key)
        with self._translated(key):
            try:
                self._client.remove_object(self._bucket, key)
            except S3Error as exc:
                if exc.code not in _NOT_FOUND_CODES:
                    raise

    # -- reads --------------------------------------------------------------------------------

    def get(self, key: str) -> bytes:
        validate_key(key)
        with self._translated(key):
            response = self._client.get_object(self._bucket, key)
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

    def open(self, key: str) -> BinaryIO:
        validate_key(key)
        with self._translated(key):
            response = self._client.get_object(self._bucket, key)
        return io.BufferedReader(_ResponseStream(response, self._endpoint), buffer_size=256 * 1024)  # type: ignore[return-value]

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except ObjectNotFound:
            return False
        return True

    def stat(self, key: str) -> ObjectInfo:
        validate_key(key)
        with self._translated(key):
            found = self._client.stat_object(self._bucket, key)
        return ObjectInfo(key=key, size=found.size or 0, etag=_clean_etag(found.etag), last_modified=found.last_modified)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        validate_prefix(prefix)  # eagerly, so a bad prefix fails at the call and not at first next()
        return self._list(prefix)

    def _list(self, prefix: str) -> Iterator[ObjectInfo]:
        with self._translated():
            # S3 returns keys in UTF-8 byte order, which is Python's str order: already sorted.
            for found in self._client.list_objects(self._bucket, prefix=prefix or None, recursive=True):
                if found.is_dir or found.object_name is None:
                    continue
                yield ObjectInfo(
                    key=found.object_name,
                    size=found.size or 0,
                    etag=_clean_etag(found.etag),
                    last_modified=found.last_modified,
                )

    def presigned_get_url(self, key: str, *, expires: timedelta = timedelta(minutes=5)) -> str:
        validate_key(key)
        seconds = check_presign_expiry(expires)
        with self._translated(key):  # without a configured region, minio asks the server for it
            return self._client.presigned_get_object(self._bucket, key, expires=timedelta(seconds=seconds))

    # -- lifecycle ----------------------------------------------------------------------------

    def ping(self) -> None:
        try:
            with self._translated():
                found = self._client.bucket_exists(self._bucket)
        except StorageUnavailable:
            raise
        except ObjectStoreError as exc:  # e.g. bad credentials: still "not ready" to /readyz
            raise StorageUnavailable(str(exc)) from exc
        if not found:
            raise StorageUnavailable(f"bucket {self._bucket!r} does not exist on {self._endpoint}")

    def ensure_ready(self) -> None:
        with self._translated():
            if self._client.bucket_exists(self._bucket):
                return
            try:
                self._client.make_bucket(self._bucket)
            except S3Error as exc:
                if exc.code not in _BUCKET_TAKEN_CODES:  # another process won the race
                    raise

    @contextmanager
    def _translated(self, key: str | None = None) -> Iterator[None]:
        """Turn minio/urllib3 failures into ObjectStoreError subclasses callers can map to HTTP."""
        try:
            yield
        except S3Error as exc:
            if exc.code in _NOT_FOUND_CODES and key is not None:
                raise ObjectNotFound(key) from exc
            if exc.code == "NoSuchBucket":
                raise StorageUnavailable(
                    f"bucket {self._bucket!r} does not exist on {self._endpoint} (run ensure_ready)"
                ) from exc
            if exc.code in _UNAVAILABLE_CODES:
                raise StorageUnavailable(f"S3 endpoint {self._endpoint} is unavailable: {exc.code}") from exc
            raise ObjectStoreError(f"S3 error {exc.code}: {exc.message}") from exc
        except ServerError as exc:
            raise StorageUnavailable(f"S3 endpoint {self._endpoint} answered HTTP {exc.status_code}") from exc
        except InvalidResponseError as exc:
            raise StorageUnavailable(f"S3 endpoint {self._endpoint} sent an invalid response") from exc
        except _NETWORK_ERRORS as exc:
            raise StorageUnavailable(f"S3 endpoint {self._endpoint} is unreachable: {_reason(exc)}") from exc


def split_endpoint(endpoint: str, secure: bool) -> tuple[str, bool]:
    """Accept 'host:port' or 'http(s)://host:port'; a URL's scheme decides TLS."""
    if "://" not in endpoint:
        if not endpoint or "/" in endpoint:
            raise StorageConfigError(f"invalid S3 endpoint {endpoint!r}")
        return endpoint, secure
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        raise StorageConfigError(f"invalid S3 endpoint {endpoint!r}: expected host:port or http(s)://host:port")
    return parts.netloc, parts.scheme == "https"


def _http_client(*, connect_timeout: float, read_timeout: float) -> urllib3.PoolManager:
    """minio's default waits 5 minutes and retries 5 times; a web request cannot wait that long."""
    return urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
        maxsize=10,
        cert_reqs="CERT_REQUIRED",
        ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
        retries=urllib3.Retry(
            total=2,
            connect=1,
            read=1,
            backoff_factor=0.2,
            status_forcelist=[500, 502, 503, 504],
        ),
    )


class _CountingReader:
    """Counts what minio pulls from the caller's stream: the size of unknown-length uploads."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.bytes_read = 0

    def read(self, size: int = -1) -> bytes:
        chunk = self._stream.read(size)
        if chunk and not isinstance(chunk, bytes):
            chunk = bytes(chunk)  # minio insists on bytes
        self.bytes_read += len(chunk or b"")
        return chunk or b""


class _ResponseStream(io.RawIOBase):
    """A streaming GET body that hands its connection back to the pool on close."""

    def __init__(self, response: urllib3.BaseHTTPResponse, endpoint: str) -> None:
        self._response = response
        self._endpoint = endpoint

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        try:
            return self._response.readinto(buffer)
        except _NETWORK_ERRORS as exc:
            raise StorageUnavailable(f"S3 endpoint {self._endpoint} dropped a download: {_reason(exc)}") from exc

    def close(self) -> None:
        if not self.closed:
            self._response.close()
            self._response.release_conn()
        super().close()


def _clean_etag(etag: str | None) -> str | None:
    return etag.strip('"') if etag else None


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)  # MaxRetryError hides the real cause here
    return str(reason or exc)
