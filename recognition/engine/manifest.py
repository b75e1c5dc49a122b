"""A model package's ``manifest.json``: what the folder holds and how to feed it, its file hashes, and the
installed models under ``<models_root>/<kind>/<name>/``."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import ModelFormatError, ModelInstallError, ModelNotFound

MANIFEST_NAME = "manifest.json"
MANIFEST_SCHEMA = 1
KINDS = ("detector", "extractor")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ModelManifest:
    """What a model directory holds and how to feed it; written as ``manifest.json``."""

    kind: str                           # "detector" | "extractor"
    name: str
    version: str
    input_size: tuple[int, int]         # (height, width) the program expects
    feature_dim: int | None             # extractor output width; None for detectors
    preprocessing: dict[str, Any]
    files: dict[str, str]               # file name -> sha256 hex
    source: str                         # "official" | "project"
    created: str                        # ISO-8601 UTC
    program_format: str = "pir-json"    # "pir-json" | "pdmodel"
    labels: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_size"] = list(self.input_size)
        data["labels"] = list(self.labels)
        data["schema"] = MANIFEST_SCHEMA
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelManifest":
        try:
            return cls(
                kind=str(data["kind"]), name=str(data["name"]), version=str(data["version"]),
                input_size=tuple(int(v) for v in data["input_size"]),
                feature_dim=None if data.get("feature_dim") is None else int(data["feature_dim"]),
                preprocessing=dict(data.get("preprocessing") or {}),
                files={str(k): str(v) for k, v in dict(data["files"]).items()},
                source=str(data.get("source", "project")), created=str(data.get("created", "")),
                program_format=str(data.get("program_format", "pir-json")),
                labels=tuple(str(v) for v in data.get("labels") or ()),
                extra=dict(data.get("extra") or {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFormatError(f"invalid model manifest: {exc!r}") from exc

    def write(self, model_dir: str | Path) -> Path:
        path = Path(model_dir) / MANIFEST_NAME
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)
        return path


def read_manifest(model_dir: str | Path) -> ModelManifest:
    """Load ``manifest.json``; ``ModelNotFound`` if absent, ``ModelFormatError`` if unreadable."""
    path = Path(model_dir) / MANIFEST_NAME
    if not path.is_file():
        raise ModelNotFound(f"no {MANIFEST_NAME} in {model_dir}")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelFormatError(f"cannot read {path}: {exc}") from exc
    return ModelManifest.from_dict(data)


def installed_models(models_root: str | Path, kind: str | None = None) -> list[ModelManifest]:
    """Manifests of every installed model under ``models_root`` (optionally one kind)."""
    root = Path(models_root)
    found = []
    for model_kind in (kind,) if kind else KINDS:
        base = root / model_kind
        if not base.is_dir():
            continue
        for model_dir in sorted(base.iterdir()):
            if model_dir.is_dir() and (model_dir / MANIFEST_NAME).is_file():
                found.append(read_manifest(model_dir))
    return found


def newest_model(models_root: str | Path, kind: str, wanted: str = "") -> ModelManifest | None:
    """The model the platform serves from ``models_root``: the newest (by ``created``) of ``kind``, optionally
    only those named ``wanted`` (name or ``name@version``)."""
    manifests = installed_models(models_root, kind) if Path(models_root).is_dir() else []
    if wanted:
        manifests = [m for m in manifests if wanted in (m.name, f"{m.name}@{m.version}")]
    return max(manifests, key=lambda m: m.created) if manifests else None


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def utc_now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def hash_files(directory: Path) -> dict[str, str]:
    """sha256 of every file in a model folder but the manifest itself (and temporary files)."""
    return {p.name: sha256_file(p) for p in sorted(directory.iterdir())
            if p.is_file() and p.name != MANIFEST_NAME and not p.name.endswith(".tmp")}


def check_model_name(name: str) -> str:
    """``name`` if it is safe as one folder name under ``<models_root>/<kind>/``, else ``ModelInstallError``."""
    if not _NAME_RE.match(name or "") or name in (".", ".."):
        raise ModelInstallError(
            f"invalid model name {name!r}: use letters, digits, '.', '_' or '-' (max 128)")
    return name


__all__ = ["KINDS", "MANIFEST_NAME", "MANIFEST_SCHEMA", "ModelManifest", "check_model_name", "hash_files",
           "installed_models", "newest_model", "read_manifest", "sha256_file", "utc_now"]
