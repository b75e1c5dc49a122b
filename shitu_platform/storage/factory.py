"""Build the configured object store from plain settings, so Django and workers share one recipe."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from .base import ObjectStore, StorageConfigError
from .filesystem import FilesystemObjectStore
from .s3 import S3ObjectStore, split_endpoint

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def object_store_from_config(config: Mapping[str, str]) -> ObjectStore:
    """STORAGE_BACKEND picks the backend; a missing or contradictory setting fails here, at startup."""
    backend = (config.get("STORAGE_BACKEND") or "filesystem").strip().lower()
    if backend == "filesystem":
        return FilesystemObjectStore(
            Path(_required(config, "STORAGE_ROOT")),
            url_secret=_required(config, "STORAGE_URL_SECRET").encode("utf-8"),
            **({"base_url": config["STORAGE_BASE_URL"]} if config.get("STORAGE_BASE_URL") else {}),
        )
    if backend == "s3":
        endpoint = _required(config, "S3_ENDPOINT")
        secure = _flag(config, "S3_SECURE")
        host, url_secure = split_endpoint(endpoint, bool(secure))
        if secure is not None and "://" in endpoint and secure != url_secure:
            raise StorageConfigError(f"S3_SECURE={config['S3_SECURE']!r} contradicts S3_ENDPOINT={endpoint!r}")
        return S3ObjectStore(
            endpoint=host,
            access_key=_required(config, "S3_ACCESS_KEY"),
            secret_key=_required(config, "S3_SECRET_KEY"),
            bucket=_required(config, "S3_BUCKET"),
            secure=url_secure,
            region=(config.get("S3_REGION") or "").strip() or None,
        )
    raise StorageConfigError(f"STORAGE_BACKEND must be 'filesystem' or 's3', not {backend!r}")


def _required(config: Mapping[str, str], name: str) -> str:
    value = (config.get(name) or "").strip()
    if not value:
        raise StorageConfigError(f"{name} must be set for STORAGE_BACKEND={config.get('STORAGE_BACKEND')!r}")
    return value


def _flag(config: Mapping[str, str], name: str) -> bool | None:
    """None when unset, so an explicit value can be checked against the endpoint's scheme."""
    value = str(config.get(name) or "").strip().lower()
    if not value:
        return None
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise StorageConfigError(f"{name} must be a boolean (true/false), not {config[name]!r}")
