"""Which extractor and detector answer, loaded once per process and kept warm.

`extractor_for(tenant=, gallery=)` is the one answer to "which extractor serves this tenant (and gallery)";
`extractor_by_key(key=)` loads a named one (re-embedding keeps every model that has a vector of an image).

The platform default of each kind: the model named by SHITU_EXTRACTOR / SHITU_DETECTOR, else the most
recently installed one under MODELS_ROOT (`manage.py shitu_models install`), else the models shipped in the
repository's `models/` folder. With no extractor anywhere (or SHITU_EXTRACTOR=colour-histogram) the
colour-histogram baseline is used (a real, documented floor: recall@1 about 0.68 on product photos); with no
detector (or SHITU_DETECTOR=none) the whole image (or the given box) is the only candidate.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

from modelhub.models import ModelVersion
from modelhub.selectors import active_model
from modelhub.storage import model_files_local
from recognition.engine.baseline import ColourHistogramExtractor
from recognition.engine.inference import PaddleDetector, PaddleExtractor
from recognition.engine.manifest import ModelManifest, newest_model
from shitu_platform.tenancy.models import Tenant

BASELINE_EXTRACTOR_KEY = "colour-histogram@1"
BASELINE_EXTRACTOR_NAME = "colour-histogram"
NO_DETECTOR = "none"
_lock = threading.Lock()
_loaded: dict[str, "LoadedModel"] = {}
_coverage_memo: dict[tuple, str | None] = {}
# (ready images, vectors per model key) of a gallery; galleries registers its reader at start-up (apps.py),
# because it owns the embeddings and sits above this app.
GalleryCoverage = Callable[[Any], tuple[int, dict[str, int]]]
_coverage_reader: list[GalleryCoverage] = []


@dataclass(frozen=True)
class LoadedModel:
    key: str  # "name@version": stored with every embedding so vectors of two models never mix
    model: object
    manifest: ModelManifest | None
    directory: Path | None = None  # where its files are (fine-tuning starts from train_weights.pdparams there)


def model_key(manifest: ModelManifest) -> str:
    return f"{manifest.name}@{manifest.version}"


def gallery_coverage_register(*, reader: GalleryCoverage) -> None:
    """Called once by galleries' AppConfig.ready(): how many ready images a gallery has and how many vectors of each model."""
    _coverage_reader[:] = [reader]


def extractor_for(*, tenant: Tenant | None, gallery: Any = None) -> LoadedModel:
    """The extractor that answers for the tenant: its promoted fine-tune if any, else the platform default
    (``tenant=None``: the platform default). With a gallery, a platform default still being embedded into it (in the
    background, ``galleries.backfill_default_model``) does not answer yet: until every ready image has a vector of
    the new default, a previous default that covers the whole gallery keeps answering."""
    version = _tenant_version(tenant)
    if version is not None:
        return _version_loaded(version)
    default = _default_loaded()
    if gallery is None:
        return default
    previous = _covering_previous_default(gallery, default.key)
    return extractor_by_key(key=previous) if previous else default


def serving_extractor_key(*, tenant: Tenant, gallery: Any = None) -> str:
    """The key ``extractor_for`` would answer with, worked out from rows and manifests alone (web processes
    show its boxes and never load a model)."""
    version = _tenant_version(tenant)
    if version is not None:
        return version.key
    default = _default_key()
    if gallery is None:
        return default
    return _covering_previous_default(gallery, default) or default


def extractor_by_key(*, key: str, tenant: Tenant | None = None) -> LoadedModel:
    """An extractor by ``name@version``: a stored version the tenant may use (its own fine-tunes, global
    versions), else a shipped or installed one (an earlier platform default stays loadable); LookupError if none."""
    if tenant is not None:
        version = ModelVersion.objects.visible_to(tenant).filter(kind=ModelVersion.Kind.EXTRACTOR, key=key).first()
        if version is not None:
            return _version_loaded(version)
    if key == BASELINE_EXTRACTOR_KEY:
        return LoadedModel(BASELINE_EXTRACTOR_KEY, ColourHistogramExtractor(), None)
    cache_key = f"key:{key}"
    with _lock:
        if cache_key not in _loaded:
            manifest = _choose("extractor", key)
            if manifest is None:
                raise LookupError(f"no installed or shipped extractor {key!r}")
            directory = _model_dir(manifest)
            _loaded[cache_key] = LoadedModel(model_key(manifest),
                                             PaddleExtractor.from_dir(directory, threads=settings.ENGINE_THREADS),
                                             manifest, directory)
        return _loaded[cache_key]


def active_detector() -> LoadedModel | None:
    """The platform's detector (every tenant shares it); None: no detector, the whole image is the candidate."""
    with _lock:
        if "detector" not in _loaded:
            _loaded["detector"] = _load_detector()
        return _loaded["detector"]


def model_directory(*, version: ModelVersion | None) -> Path | None:
    """The local folder of a stored version's files (fetched once), or of the platform default extractor
    (``version=None``); None for the colour-histogram baseline. Nothing is loaded into memory."""
    if version is not None:
        return model_files_local(version)
    manifest = _default_manifest()
    return _model_dir(manifest) if manifest is not None else None


def _tenant_version(tenant: Tenant | None) -> ModelVersion | None:
    active = active_model(tenant=tenant) if tenant is not None else None
    return active.extractor if active is not None else None


def _candidate_roots() -> list[Path]:
    return [Path(settings.MODELS_ROOT), Path(settings.BASE_DIR) / "models"]


def _model_dir(manifest: ModelManifest) -> Path | None:
    for root in _candidate_roots():
        directory = root / manifest.kind / manifest.name
        if (directory / "manifest.json").is_file():
            return directory
    return None


def _choose(kind: str, wanted: str) -> ModelManifest | None:
    for root in _candidate_roots():
        manifest = newest_model(root, kind, wanted)
        if manifest is not None:
            return manifest
    return None


def _default_manifest() -> ModelManifest | None:
    if settings.SHITU_EXTRACTOR == BASELINE_EXTRACTOR_NAME:
        return None
    return _choose("extractor", settings.SHITU_EXTRACTOR)


def _default_key() -> str:
    loaded = _loaded.get("extractor")
    if loaded is not None:
        return loaded.key
    manifest = _default_manifest()
    return model_key(manifest) if manifest is not None else BASELINE_EXTRACTOR_KEY


def _default_loaded() -> LoadedModel:
    with _lock:
        if "extractor" not in _loaded:
            manifest = _default_manifest()
            if manifest is None:
                _loaded["extractor"] = LoadedModel(BASELINE_EXTRACTOR_KEY, ColourHistogramExtractor(), None)
            else:
                directory = _model_dir(manifest)
                _loaded["extractor"] = LoadedModel(model_key(manifest), PaddleExtractor.from_dir(
                    directory, threads=settings.ENGINE_THREADS), manifest, directory)
        return _loaded["extractor"]


def _version_loaded(version: ModelVersion) -> LoadedModel:
    """A stored version, fetched from object storage into a local cache dir once, then kept in memory (the last
    SHITU_MAX_LOADED_MODELS of them)."""
    cache_key = f"version:{version.key}"
    with _lock:
        if cache_key not in _loaded:
            directory = model_files_local(version)
            _evict_versions(keep=settings.SHITU_MAX_LOADED_MODELS - 1)
            extractor = PaddleExtractor.from_dir(directory, threads=settings.ENGINE_THREADS)
            _loaded[cache_key] = LoadedModel(version.key, extractor, None, directory)
        return _loaded[cache_key]


def _evict_versions(*, keep: int) -> None:
    version_keys = [k for k in _loaded if k.startswith("version:")]
    for stale in version_keys[: max(0, len(version_keys) - keep)]:
        del _loaded[stale]


def _covering_previous_default(gallery: Any, default_key: str) -> str | None:
    """The key of an earlier default that still loads and has a vector of every ready image of the gallery, while
    the current default has not; None when the current default covers it (or none other does)."""
    memo_key = (gallery.pk, getattr(gallery, "index_version", None), default_key)
    if memo_key in _coverage_memo:
        return _coverage_memo[memo_key]
    if not _coverage_reader:
        raise RuntimeError("no gallery coverage reader: the galleries app registers one in its AppConfig.ready()")
    ready, counts = _coverage_reader[0](gallery)
    chosen = None
    if counts.get(default_key, 0) < ready:
        complete = sorted((n, key) for key, n in counts.items() if n >= ready and key != default_key)
        for _, key in reversed(complete):
            if key == BASELINE_EXTRACTOR_KEY or _choose("extractor", key) is not None:
                chosen = key
                break
    if len(_coverage_memo) > 10_000:  # one entry per (gallery, index version): forget old versions now and then
        _coverage_memo.clear()
    _coverage_memo[memo_key] = chosen
    return chosen


def _load_detector() -> LoadedModel | None:
    manifest = None if settings.SHITU_DETECTOR == NO_DETECTOR else _choose("detector", settings.SHITU_DETECTOR)
    if manifest is None:
        return None
    detector = PaddleDetector.from_dir(_model_dir(manifest), threads=settings.ENGINE_THREADS)
    return LoadedModel(model_key(manifest), detector, manifest)

