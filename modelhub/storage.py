"""Model files in object storage (so every worker can load any tenant's model) and their local cache."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from django.conf import settings

from modelhub.models import ModelVersion
from shitu_platform.object_store import object_store
from shitu_platform.storage import tenant_key

GLOBAL_PREFIX = "models"


def model_prefix(*, tenant_id: int | None, key: str) -> str:
    safe = key.replace("@", "_at_")
    return tenant_key(tenant_id, "models", safe) if tenant_id is not None else f"{GLOBAL_PREFIX}/{safe}"


def model_files_upload(*, directory: Path, prefix: str) -> None:
    for path in sorted(p for p in directory.iterdir() if p.is_file()):
        with path.open("rb") as handle:
            object_store().put(f"{prefix}/{path.name}", handle, length=path.stat().st_size)


def model_files_local(version: ModelVersion) -> Path:
    """A local directory holding the version's files (downloaded once, atomically)."""
    target = Path(settings.MODELS_ROOT) / "cache" / version.key.replace("@", "_at_")
    if (target / "manifest.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".fetch-", dir=target.parent))
    try:
        for info in object_store().list(version.storage_prefix + "/"):
            (staging / info.key.rsplit("/", 1)[-1]).write_bytes(object_store().get(info.key))
        try:
            os.replace(staging, target)
        except OSError:  # another process finished first
            shutil.rmtree(staging, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target
