"""Build a synthetic training set: ``python -m training.data_builder.build --out DIR --seed N --per-class K``.

Writes ``DIR/images/<class>/<view>.jpg``, ``DIR/labels.txt`` (``relpath<TAB>label``, PaddleClas'
format) and ``DIR/build.json`` (sources, counts, settings). The output is a pure function of
(seed, settings, installed sources): every view is drawn from ``(seed, class, index)``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .render import encode_jpeg, product_design, rasterize, render_view
from .sources import (DEFAULT_CACHE, DEFAULT_SOURCES, SOURCES, Identity, SourceMissing, install_sources,
                      load_identities)

SKIN_TONES = {f"{v:x}" for v in range(0x1F3FB, 0x1F400)}
LABELS_NAME = "labels.txt"
INFO_NAME = "build.json"


@dataclass(frozen=True)
class BuildSettings:
    out: Path
    seed: int = 0
    per_class: int = 5
    identities: int | None = 3000       # None: every eligible identity
    min_designs: int = 2                 # emoji need this many designers (views of one drawing are too easy)
    workers: int = 2


def _class_seed(key: str) -> int:
    """Stable across source versions: a class's views do not change when other classes come and go."""
    return zlib.crc32(key.encode("utf-8"))


def eligible(identities: Sequence[Identity], *, min_designs: int) -> list[Identity]:
    """Drop skin-tone variants (near-duplicates of their base emoji) and single-design emoji."""
    keep = []
    for identity in identities:
        if identity.family == "emoji":
            parts = set(identity.key.split(":", 1)[1].split("-"))
            if parts & SKIN_TONES or len(identity.sources) < min_designs:
                continue
        keep.append(identity)
    return keep


def choose(identities: Sequence[Identity], count: int | None, seed: int) -> list[Identity]:
    """A seeded sample of ``count`` identities, returned in key order."""
    if count is None or count >= len(identities):
        return sorted(identities, key=lambda i: i.key)
    order = np.random.default_rng([seed, 0x5E1]).permutation(len(identities))[:count]
    return sorted((identities[int(i)] for i in order), key=lambda i: i.key)


def class_dir_name(index: int) -> str:
    return f"{index:05d}"


# --- worker side ----------------------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _clutter(rng: np.random.Generator) -> Any:
    """Another identity's product, for shelf backgrounds (its own design, a random drawing)."""
    identities = _WORKER["identities"]
    other = identities[int(rng.integers(len(identities)))]
    design = product_design(np.random.default_rng([_WORKER["seed"], _class_seed(other.key), 1]),
                            brand_colour=other.colour)
    art = rasterize(other.artworks[int(rng.integers(len(other.artworks)))], 96)
    return _package_only(art, design, other.title, rng)


def _package_only(art: Any, design: Any, title: str, rng: np.random.Generator) -> Any:
    from .render import draw_package

    return draw_package(art, design, title, rng, width=64)


def view_artwork_index(identity: Identity, rng: np.random.Generator, primary: int) -> int:
    """Half of the views show the identity's primary drawing, the rest any drawing."""
    if len(identity.artworks) == 1 or rng.random() < 0.5:
        return primary
    return int(rng.integers(len(identity.artworks)))


def render_job(job: tuple[int, int, str]) -> tuple[str, bytes]:
    """Render view ``view`` of class ``class_index`` (the identity with ``key``) to JPEG bytes."""
    class_index, view, key = job
    identity = _WORKER["by_key"][key]
    seed = _WORKER["seed"]
    class_seed = _class_seed(identity.key)
    design_rng = np.random.default_rng([seed, class_seed, 1])
    design = product_design(design_rng, brand_colour=identity.colour)
    primary = int(design_rng.integers(len(identity.artworks)))
    rng = np.random.default_rng([seed, class_seed, 2, view])
    artwork = identity.artworks[view_artwork_index(identity, rng, primary)]
    image = render_view(rasterize(artwork), design, identity.title, rng, clutter=_clutter)
    rel = f"images/{class_dir_name(class_index)}/{view}.jpg"
    return rel, encode_jpeg(image, rng)


def _init_pool(identities: Sequence[Identity], seed: int) -> None:
    _WORKER["identities"] = list(identities)
    _WORKER["by_key"] = {i.key: i for i in identities}
    _WORKER["seed"] = seed


# --- driver -------------------------------------------------------------------------------------


def build(identities: Sequence[Identity], settings: BuildSettings, *, clutter_pool: Sequence[Identity] | None = None,
          progress: bool = False) -> dict[str, Any]:
    """Render ``settings.per_class`` views of each identity into ``settings.out``; returns the summary."""
    if settings.per_class < 2:
        raise ValueError("per_class must be >= 2: a class needs positives")
    if not identities:
        raise ValueError("no identities to build")
    out = Path(settings.out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    pool_ids = list(clutter_pool or identities)
    started = time.perf_counter()
    jobs = [(index, view, identity.key) for index, identity in enumerate(identities)
            for view in range(settings.per_class)]
    all_ids = {i.key: i for i in [*pool_ids, *identities]}
    ids_for_workers = list(all_ids.values())
    label_of = {identity.key: identity.key for identity in identities}
    lines = []
    if settings.workers > 1:
        context = multiprocessing.get_context("fork" if sys.platform != "win32" else "spawn")
        with context.Pool(settings.workers, initializer=_init_pool, initargs=(ids_for_workers, settings.seed)) as pool:
            results = pool.imap(render_job, jobs, chunksize=16)
            lines = _write_all(out, jobs, results, label_of, progress)
    else:
        _init_pool(ids_for_workers, settings.seed)
        lines = _write_all(out, jobs, map(render_job, jobs), label_of, progress)
    (out / LABELS_NAME).write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    used = Counter(artwork.source for identity in identities for artwork in identity.artworks)
    summary = {
        "identities": len(identities), "images": len(lines), "per_class": settings.per_class,
        "seed": settings.seed, "families": dict(Counter(i.family for i in identities)),
        "artworks_by_source": dict(sorted(used.items())),
        "licences": {name: SOURCES[name].licence for name in _source_names(used)},
        "seconds": round(time.perf_counter() - started, 1),
    }
    (out / INFO_NAME).write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return summary


def _source_names(used: Counter) -> list[str]:
    """Artwork source names (``fluent-flat``) back to source specs (``fluent-emoji``)."""
    names = set()
    for name in used:
        if name in SOURCES:
            names.add(name)
        elif name.startswith("fluent-"):
            names.add("fluent-emoji")
    return sorted(names)


def _write_all(out: Path, jobs: Sequence[tuple[int, int, str]], results: Any, label_of: dict[str, str],
               progress: bool) -> list[str]:
    lines = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc="render", unit="img", file=sys.stderr)
    for (class_index, _view, key), (rel, data) in zip(jobs, results):
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        lines.append(f"{rel}\t{label_of[key]}")
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.data_builder.build", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output folder (images/, labels.txt, build.json)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-class", type=int, default=5, help="views per identity")
    parser.add_argument("--identities", type=int, default=3000, help="how many identities (0: all eligible)")
    parser.add_argument("--sources", nargs="+", default=list(DEFAULT_SOURCES), choices=sorted(SOURCES))
    parser.add_argument("--folder", action="append", default=[],
                        help="extra source: a folder with one sub-folder of images per identity")
    parser.add_argument("--cache", default=str(DEFAULT_CACHE), help="where the source packages are installed")
    parser.add_argument("--install", action="store_true", help="install missing sources first (npm; apt as root)")
    parser.add_argument("--min-designs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    cache = Path(args.cache)
    try:
        if args.install:
            install_sources(cache, args.sources)
        everything = load_identities(args.sources, cache, folders=[Path(f) for f in args.folder])
    except SourceMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    pool = eligible(everything, min_designs=args.min_designs)
    chosen = choose(pool, args.identities or None, args.seed)
    settings = BuildSettings(out=Path(args.out), seed=args.seed, per_class=args.per_class,
                             identities=args.identities or None, min_designs=args.min_designs, workers=args.workers)
    summary = build(chosen, settings, clutter_pool=pool, progress=True)
    print(json.dumps(summary, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
