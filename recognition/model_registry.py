"""Which detector and extractor this process uses, loaded once and kept warm.

Order of preference for each kind: the model named by SHITU_EXTRACTOR / SHITU_DETECTOR, else the
most recently installed one under MODELS_ROOT (`manage.py shitu_models install`), else the models
shipped in the repository's `models/` folder. With no extractor anywhere (or SHITU_EXTRACTOR=
colour-histogram) the colour-histogram baseline is used (a real, documented floor: recall@1 about
0.68 on product photos); with no detector (or SHITU_DETECTOR=none) the whole image (or the given
box) is the only candidate.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from recognition.engine.baseline import ColourHistogramExtractor
from recognition.engine.manifest import ModelManifest, newest_model

BASELINE_EXTRACTOR_KEY = "colour-histogram@1"
BASELINE_EXTRACTOR_NAME = "colour-histogram"
NO_DETECTOR = "none"
_lock = threading.Lock()
_loaded: dict[str, "LoadedModel"] = {}
_coverage_memo: dict[tuple, str | None] = {}


@dataclass(frozen=True)
class LoadedModel:
    key: str  # "name@version": stored with every embedding so vectors of two models never mix
    model: object
    manifest: ModelManifest | None
    directory: Path | None = None  # where its files are (fine-tuning starts from train_weights.pdparams there)


def model_key(manifest: ModelManifest) -> str:
    return f"{manifest.name}@{manifest.version}"


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


def active_extractor() -> LoadedModel:
    """The platform's default extractor (loaded and warmed up on first use); tenants may have their own."""
    with _lock:
        if "extractor" not in _loaded:
            _loaded["extractor"] = _load_extractor()
        return _loaded["extractor"]


def extractor_for(tenant: object) -> LoadedModel:
    """The tenant's active extractor: its promoted fine-tune if any, else the platform default."""
    from training.selectors import active_extractor_version

    version = active_extractor_version(tenant=tenant)
    if version is None:
        return active_extractor()
    return extractor_for_version(version)


def extractor_for_gallery(tenant: object, gallery: object) -> LoadedModel:
    """The extractor that answers for this gallery: the tenant's, except while a new platform default is still
    being embedded into the gallery (in the background, ``galleries.backfill_default_model``). Until every ready
    image has a vector of the new default, a previous default that covers the whole gallery keeps answering."""
    from training.selectors import active_extractor_version

    version = active_extractor_version(tenant=tenant)
    if version is not None:
        return extractor_for_version(version)
    default = active_extractor()
    previous = _covering_previous_default(gallery, default.key)
    return previous if previous is not None else default


def _covering_previous_default(gallery: object, default_key: str) -> LoadedModel | None:
    from galleries.selectors import model_coverage

    memo_key = (gallery.pk, getattr(gallery, "index_version", None), default_key)
    if memo_key in _coverage_memo:
        chosen = _coverage_memo[memo_key]
        return extractor_by_key(chosen) if chosen else None
    ready, counts = model_coverage(gallery=gallery)
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
    return extractor_by_key(chosen) if chosen else None


def extractor_by_key(key: str) -> LoadedModel:
    """A shipped or installed extractor by ``name@version`` (an earlier platform default stays loadable)."""
    if key == BASELINE_EXTRACTOR_KEY:
        return LoadedModel(BASELINE_EXTRACTOR_KEY, ColourHistogramExtractor(), None)
    cache_key = f"key:{key}"
    with _lock:
        if cache_key not in _loaded:
            from recognition.engine.inference import PaddleExtractor

            manifest = _choose("extractor", key)
            if manifest is None:
                raise LookupError(f"no installed or shipped extractor {key!r}")
            directory = _model_dir(manifest)
            _loaded[cache_key] = LoadedModel(model_key(manifest),
                                             PaddleExtractor.from_dir(directory, threads=settings.ENGINE_THREADS),
                                             manifest, directory)
        return _loaded[cache_key]


def extractor_for_version(version: object) -> LoadedModel:
    """A stored ModelVersion, fetched from object storage into a local cache dir once, then kept in memory."""
    key = f"version:{version.key}"
    with _lock:
        if key not in _loaded:
            from recognition.engine.inference import PaddleExtractor
            from training.storage import model_files_local

            directory = model_files_local(version)
            _evict_versions(keep=settings.SHITU_MAX_LOADED_MODELS - 1)
            extractor = PaddleExtractor.from_dir(directory, threads=settings.ENGINE_THREADS)
            _loaded[key] = LoadedModel(version.key, extractor, None, directory)
        return _loaded[key]


def _evict_versions(*, keep: int) -> None:
    version_keys = [k for k in _loaded if k.startswith("version:")]
    for stale in version_keys[: max(0, len(version_keys) - keep)]:
        del _loaded[stale]


def active_detector() -> LoadedModel | None:
    with _lock:
        if "detector" not in _loaded:
            _loaded["detector"] = _load_detector()
        return _loaded["detector"]


def default_extractor_dir() -> Path | None:
    """The folder of the extractor the platform serves by default; None for the colour-histogram baseline."""
    if settings.SHITU_EXTRACTOR == BASELINE_EXTRACTOR_NAME:
        return None
    manifest = _choose("extractor", settings.SHITU_EXTRACTOR)
    return _model_dir(manifest) if manifest is not None else None


def _load_extractor() -> LoadedModel:
    from recognition.engine.inference import PaddleExtractor

    manifest = None if settings.SHITU_EXTRACTOR == BASELINE_EXTRACTOR_NAME else _choose("extractor", settings.SHITU_EXTRACTOR)
    if manifest is None:
        return LoadedModel(BASELINE_EXTRACTOR_KEY, ColourHistogramExtractor(), None)
    directory = _model_dir(manifest)
    extractor = PaddleExtractor.from_dir(directory, threads=settings.ENGINE_THREADS)
    return LoadedModel(model_key(manifest), extractor, manifest, directory)


def _load_detector() -> LoadedModel | None:
    from recognition.engine.inference import PaddleDetector

    manifest = None if settings.SHITU_DETECTOR == NO_DETECTOR else _choose("detector", settings.SHITU_DETECTOR)
    if manifest is None:
        return None
    detector = PaddleDetector.from_dir(_model_dir(manifest), threads=settings.ENGINE_THREADS)
    return LoadedModel(model_key(manifest), detector, manifest)
