"""The object-store interface, its errors and the key rules every backend shares.

Pure Python on purpose: the engine, Celery tasks and Django views all use it.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import BinaryIO

MAX_KEY_LENGTH = 900
# S3 caps keys at 1024 UTF-8 bytes; 900 characters of mostly ASCII leaves headroom.
MAX_KEY_BYTES = 1024
MAX_PRESIGN_EXPIRY = timedelta(days=7)  # S3's SigV4 limit; filesystem follows it too.
TENANT_ROOT = "tenants"

_TENANT_ID_RE = re.compile(r"^[A-Za-z0-9_-]+$")


class ObjectStoreError(Exception):
    """Base of every storage failure; `code` is what API error bodies carry."""

    code = "storage_error"


class ObjectNotFound(ObjectStoreError):
    code = "object_not_found"


class StorageUnavailable(ObjectStoreError):
    """The backend cannot be reached or answered with a server error: callers map it to 503."""

    code = "storage_unavailable"


class InvalidObjectKey(ObjectStoreError, ValueError):
    code = "invalid_object_key"


class StorageConfigError(ObjectStoreError, ValueError):
    """Settings do not describe a usable store; raised at startup, never per request."""

    code = "storage_config_error"


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str | None
    last_modified: datetime | None


class ObjectStore(abc.ABC):
    """What the platform needs from object storage, nothing more, so backends stay swappable."""

    @abc.abstractmethod
    def put(
        self,
        key: str,
        data: bytes | BinaryIO,
        *,
        content_type: str = "application/octet-stream",
        length: int | None = None,
    ) -> ObjectInfo:
        """Store `data` under `key`, replacing any previous object; readers never see half of it."""

    @abc.abstractmethod
    def get(self, key: str) -> bytes:
        """Whole object in memory; use `open` for large ones."""

    @abc.abstractmethod
    def open(self, key: str) -> BinaryIO:
        """Streaming read; the caller closes it (use it as a context manager)."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Idempotent so sweeps and task retries can call it blindly."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool: ...

    @abc.abstractmethod
    def stat(self, key: str) -> ObjectInfo:
        """Raises ObjectNotFound if missing."""

    @abc.abstractmethod
    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object whose key starts with `prefix` (plain string prefix), sorted by key.

        End tenant/folder prefixes with '/' (see `tenant_prefix`) or "tenants/1" also matches "tenants/10/".
        """

    @abc.abstractmethod
    def presigned_get_url(self, key: str, *, expires: timedelta = timedelta(minutes=5)) -> str:
        """Time-limited download URL, so clients fetch bytes without passing through a web worker."""

    @abc.abstractmethod
    def ping(self) -> None:
        """Raise StorageUnavailable unless the store can serve requests; backs /readyz."""

    @abc.abstractmethod
    def ensure_ready(self) -> None:
        """Create the bucket / root directory if missing; safe to call on every start."""


def validate_key(key: str) -> str:
    """Reject keys that could escape a root, mean different things on S3 and disk, or exceed S3 limits."""
    if not isinstance(key, str) or not key:
        raise InvalidObjectKey("object key must be a non-empty string")
    if len(key) > MAX_KEY_LENGTH or len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise InvalidObjectKey(f"object key longer than {MAX_KEY_LENGTH} characters")
    if key.startswith("/"):
        raise InvalidObjectKey(f"object key must be relative: {key[:80]!r}")
    for segment in key.split("/"):
        _validate_segment(segment, key)
    return key


def validate_prefix(prefix: str) -> str:
    """A listing prefix: '' (everything), a folder ending in '/', or a folder plus the start of a name."""
    if not isinstance(prefix, str):
        raise InvalidObjectKey("prefix must be a string")
    if prefix == "":
        return prefix
    folder, _, name_start = prefix.rpartition("/")
    if folder:
        validate_key(folder)
    elif prefix.startswith("/"):
        raise InvalidObjectKey(f"prefix must be relative: {prefix[:80]!r}")
    if name_start in (".", ".."):
        # A listing prefix of "a/.." would be harmless on S3 but is a traversal on disk.
        raise InvalidObjectKey(f"invalid prefix {prefix[:80]!r}")
    if name_start:
        _check_characters(name_start, prefix)
    if len(prefix) > MAX_KEY_LENGTH:
        raise InvalidObjectKey(f"prefix longer than {MAX_KEY_LENGTH} characters")
    return prefix


def tenant_prefix(tenant_id: int | str) -> str:
    """'tenants/<id>/': the listing prefix that holds exactly one tenant's objects."""
    return f"{TENANT_ROOT}/{_tenant_segment(tenant_id)}/"


def tenant_key(tenant_id: int | str, *parts: str) -> str:
    """'tenants/<id>/<part>/...': the one way keys are namespaced by tenant, so prefixes never overlap."""
    if not parts:
        raise InvalidObjectKey("tenant_key needs at least one part below the tenant")
    for part in parts:
        if not isinstance(part, str) or "/" in part:
            raise InvalidObjectKey(f"key part must be a string without '/': {part!r}")
        _validate_segment(part, part)
    return validate_key(tenant_prefix(tenant_id) + "/".join(parts))


def _tenant_segment(tenant_id: int | str) -> str:
    if isinstance(tenant_id, bool):  # bool is an int; True would silently become tenant 1
        raise InvalidObjectKey("tenant id must be an int or a slug string")
    if isinstance(tenant_id, int):
        if tenant_id < 0:
            raise InvalidObjectKey(f"tenant id must not be negative: {tenant_id}")
        return str(tenant_id)
    if isinstance(tenant_id, str) and _TENANT_ID_RE.match(tenant_id):
        return tenant_id
    raise InvalidObjectKey(f"invalid tenant id {tenant_id!r}")


def _validate_segment(segment: str, key: str) -> None:
    if segment == "":
        raise InvalidObjectKey(f"object key has an empty segment: {key[:80]!r}")
    if segment in (".", ".."):
        raise InvalidObjectKey(f"object key has a '{segment}' segment: {key[:80]!r}")
    _check_characters(segment, key)


def _check_characters(text: str, key: str) -> None:
    if "\\" in text:
        raise InvalidObjectKey(f"object key contains a backslash: {key[:80]!r}")
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in text):
        # NUL truncates paths in C APIs; other control characters break logs and XML listings.
        raise InvalidObjectKey(f"object key contains a control character: {key[:80]!r}")


def check_presign_expiry(expires: timedelta) -> int:
    """Whole seconds of validity, within S3's 1 s .. 7 days so both backends accept the same values."""
    seconds = int(expires.total_seconds())
    if seconds < 1 or expires > MAX_PRESIGN_EXPIRY:
        raise ValueError("presigned URL expiry must be between 1 second and 7 days")
    return seconds
