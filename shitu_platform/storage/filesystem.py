"""Object store on a local directory: the embedded default, no server to run."""

from __future__ import annotations

import hashlib
import hmac
import os
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote, urlencode

from .base import (
    InvalidObjectKey,
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

_CHUNK_SIZE = 1024 * 1024
# Uploads in flight are hidden files next to their target; list() skips them and keys may not use the pattern.
_TEMP_PREFIX = "."
_TEMP_SUFFIX = ".partial"
# The md5 travels with the file (set before the rename), so stat/list need not re-read big objects.
_ETAG_XATTR = "user.shitu.md5"
_MIN_SECRET_BYTES = 16


class FilesystemObjectStore(ObjectStore):
    """Keys map to files under `root`; writes are atomic renames, so a crash never leaves half an object."""

    def __init__(self, root: Path, *, url_secret: bytes, base_url: str = "/media/signed/") -> None:
        if not isinstance(url_secret, (bytes, bytearray)) or len(url_secret) < _MIN_SECRET_BYTES:
            raise StorageConfigError(f"url_secret must be at least {_MIN_SECRET_BYTES} bytes")
        self._root = Path(root).resolve()
        self._url_secret = bytes(url_secret)
        self._base_url = base_url if base_url.endswith("/") else base_url + "/"

    @property
    def root(self) -> Path:
        return self._root

    def __repr__(self) -> str:
        return f"FilesystemObjectStore(root={str(self._root)!r})"

    # -- writes -------------------------------------------------------------------------------

    def put(
        self,
        key: str,
        data: bytes | BinaryIO,
        *,
        content_type: str = "application/octet-stream",
        length: int | None = None,
    ) -> ObjectInfo:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:
            raise ObjectStoreError(f"key {key!r} is below an existing object") from exc
        file_descriptor, temp_name = tempfile.mkstemp(dir=path.parent, prefix=_TEMP_PREFIX, suffix=_TEMP_SUFFIX)
        try:
            with os.fdopen(file_descriptor, "wb") as temp_file:
                size, md5_hex = _write_payload(temp_file, data, length)
                temp_file.flush()
                _set_etag_xattr(temp_file.fileno(), md5_hex)
                os.fchmod(temp_file.fileno(), 0o644)  # mkstemp's 0600 would hide files from a media server
                os.fsync(temp_file.fileno())
            os.replace(temp_name, path)
        except IsADirectoryError as exc:
            raise ObjectStoreError(f"key {key!r} is a prefix of existing objects") from exc
        finally:
            _remove_quietly(temp_name)
        _fsync_directory(path.parent)  # makes the rename itself durable
        modified = path.stat().st_mtime
        return ObjectInfo(key=key, size=size, etag=md5_hex, last_modified=_utc(modified))

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink(missing_ok=True)
        except IsADirectoryError:
            pass  # a "folder" is not an object; nothing stored under this exact key

    # -- reads --------------------------------------------------------------------------------

    def get(self, key: str) -> bytes:
        with self.open(key) as stream:
            return stream.read()

    def open(self, key: str) -> BinaryIO:
        path = self._path(key)
        try:
            return open(path, "rb")  # noqa: SIM115 - the caller owns and closes the stream
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise ObjectNotFound(key) from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def stat(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            status = path.stat()
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise ObjectNotFound(key) from exc
        if not path.is_file():
            raise ObjectNotFound(key)
        return ObjectInfo(key=key, size=status.st_size, etag=_etag(path), last_modified=_utc(status.st_mtime))

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        folder, _, name_start = prefix.rpartition("/")
        start = self._root / folder if folder else self._root
        if not start.resolve().is_relative_to(self._root):
            raise InvalidObjectKey(f"prefix {prefix!r} leaves the storage root")
        return self._walk(start, f"{folder}/" if folder else "", name_start)

    def _walk(self, directory: Path, key_prefix: str, name_start: str) -> Iterator[ObjectInfo]:
        """Depth-first in key order: a folder sorts as 'name/', so its subtree lands where its keys belong."""
        try:
            with os.scandir(directory) as scan:
                entries = [entry for entry in scan if entry.name.startswith(name_start)]
        except (FileNotFoundError, NotADirectoryError):
            return
        ordered: list[tuple[str, os.DirEntry[str], bool]] = []
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                ordered.append((entry.name + "/", entry, True))
            elif entry.is_file(follow_symlinks=False) and not _is_temp_name(entry.name):
                ordered.append((entry.name, entry, False))
        ordered.sort(key=lambda item: item[0])
        for _, entry, is_folder in ordered:
            key = key_prefix + entry.name
            if is_folder:
                yield from self._walk(Path(entry.path), key + "/", "")
                continue
            try:
                status = entry.stat(follow_symlinks=False)
                etag = _etag(Path(entry.path))
            except FileNotFoundError:
                continue  # deleted while we walked
            yield ObjectInfo(key=key, size=status.st_size, etag=etag, last_modified=_utc(status.st_mtime))

    # -- signed URLs --------------------------------------------------------------------------

    def presigned_get_url(self, key: str, *, expires: timedelta = timedelta(minutes=5)) -> str:
        self._path(key)
        expires_at = int(time.time()) + check_presign_expiry(expires)
        query = urlencode({"expires": expires_at, "signature": self._sign(key, expires_at)})
        return f"{self._base_url}{quote(key, safe='/')}?{query}"

    def verify_presigned(self, key: str, expires: int | str, signature: str, *, now: float | None = None) -> bool:
        """True if a URL from presigned_get_url for this (URL-decoded) key is intact and unexpired."""
        try:
            expires_at = int(expires)
            validate_key(key)
            given = signature.encode("utf-8")
        except (TypeError, ValueError, AttributeError):
            return False
        expected = self._sign(key, expires_at).encode("ascii")
        signature_ok = hmac.compare_digest(expected, given)
        current = time.time() if now is None else now
        return signature_ok and current <= expires_at

    def _sign(self, key: str, expires_at: int) -> str:
        message = f"GET\n{key}\n{expires_at}".encode()
        return hmac.new(self._url_secret, message, hashlib.sha256).hexdigest()

    # -- lifecycle ----------------------------------------------------------------------------

    def ping(self) -> None:
        if not self._root.is_dir():
            raise StorageUnavailable(f"storage root {self._root} does not exist")
        if not os.access(self._root, os.W_OK | os.X_OK):
            raise StorageUnavailable(f"storage root {self._root} is not writable")

    def ensure_ready(self) -> None:
        try:
            self._root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageUnavailable(f"cannot create storage root {self._root}: {exc}") from exc

    # -- helpers ------------------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        """Validated key -> path; resolving catches symlinks that would lead outside the root."""
        validate_key(key)
        if _is_temp_name(key.rpartition("/")[2]):
            raise InvalidObjectKey(f"object key {key!r} uses the reserved in-flight upload pattern")
        path = (self._root / key).resolve()
        if not path.is_relative_to(self._root) or path == self._root:
            raise InvalidObjectKey(f"object key {key!r} leaves the storage root")
        return path


def _write_payload(target: BinaryIO, data: bytes | BinaryIO, length: int | None) -> tuple[int, str]:
    digest = hashlib.md5(usedforsecurity=False)
    if isinstance(data, (bytes, bytearray, memoryview)):
        if length is not None and length != len(data):
            raise ValueError(f"length {length} does not match {len(data)} bytes of data")
        target.write(data)
        digest.update(data)
        return len(data), digest.hexdigest()
    size = 0
    while length is None or size < length:
        want = _CHUNK_SIZE if length is None else min(_CHUNK_SIZE, length - size)
        chunk = data.read(want)
        if not chunk:
            break
        target.write(chunk)
        digest.update(chunk)
        size += len(chunk)
    if length is not None and size < length:
        raise ObjectStoreError(f"stream ended after {size} of {length} bytes")
    return size, digest.hexdigest()


def _etag(path: Path) -> str:
    try:
        return os.getxattr(path, _ETAG_XATTR).decode("ascii")
    except OSError:  # filesystem without user xattrs, or a file placed by hand
        digest = hashlib.md5(usedforsecurity=False)
        with open(path, "rb") as stream:
            for chunk in iter(lambda: stream.read(_CHUNK_SIZE), b""):
                digest.update(chunk)
        return digest.hexdigest()


def _set_etag_xattr(file_descriptor: int, md5_hex: str) -> None:
    try:
        os.setxattr(file_descriptor, _ETAG_XATTR, md5_hex.encode("ascii"))
    except OSError:
        pass  # _etag falls back to hashing the file


def _is_temp_name(name: str) -> bool:
    return name.startswith(_TEMP_PREFIX) and name.endswith(_TEMP_SUFFIX)


def _remove_quietly(name: str) -> None:
    try:
        os.unlink(name)
    except FileNotFoundError:
        pass


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc)
