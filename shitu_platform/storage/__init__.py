"""Object storage for images, galleries and model files: one interface, a filesystem and an S3 backend."""

from .base import (
    InvalidObjectKey,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    ObjectStoreError,
    StorageConfigError,
    StorageUnavailable,
    tenant_key,
    tenant_prefix,
    validate_key,
    validate_prefix,
)
from .factory import object_store_from_config
from .filesystem import FilesystemObjectStore
from .s3 import S3ObjectStore

__all__ = [
    "FilesystemObjectStore",
    "InvalidObjectKey",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "ObjectStoreError",
    "S3ObjectStore",
    "StorageConfigError",
    "StorageUnavailable",
    "object_store_from_config",
    "tenant_key",
    "tenant_prefix",
    "validate_key",
    "validate_prefix",
]
