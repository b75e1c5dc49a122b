"""Cold worker: time to get K=50 candidates' reference local features from a gallery's pack (one read) vs one object
per image, on the filesystem store and on moto's S3 server on loopback. Not a test.

    nice -n 5 .venv/bin/python bench/local_feature_pack.py [--sizes 50,500,2000] [--repeats 5] [--no-s3]

Features are real RootSIFT extractions (500 keypoints max, as SHITU_LOCAL_FEATURES), repeated to fill each
gallery size. "Cold" is a worker with an empty features cache: the per-image path reads and
decodes 50 objects, the pack path reads the gallery's whole pack (header, body, CRC-32) and decodes the 50 from it,
as `local_features_for_embeddings` does (it keeps the body for the gallery's later candidates). The Embedding query both paths start with is the same and not timed.
Timed features have 500 keypoints (66 KB) each, the cap; the demo photos' bytes are printed for comparison.
The filesystem store's files are in the OS page cache (just written): its figures are per-request overhead,
not disk latency. Medians of --repeats runs. About a minute on 2 cores.
"""
from __future__ import annotations

import argparse
import io
import logging
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shitu_platform.settings")

import django

django.setup()

from galleries.local_feature_pack import pack_encode, pack_read_body, pack_read_header
from recognition.engine.imageio import load_image
from recognition.engine.local_features import LocalFeatures, extract_local_features
from shitu_platform.demo_data import demo_gallery_photos
from shitu_platform.storage import FilesystemObjectStore, ObjectStore, S3ObjectStore

K = 50


def demo_blobs() -> list[bytes]:
    return [extract_local_features(load_image(photo.data), max_features=500).to_bytes() for photo in demo_gallery_photos()]


def full_blobs(count: int = 36) -> list[bytes]:
    """500 keypoints each (SHITU_LOCAL_FEATURES' cap, which photos of printed packages reach): blocky-noise crops."""
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (120, 120, 3), dtype=np.uint8).repeat(4, axis=0).repeat(4, axis=1) for _ in range(count)]
    return [extract_local_features(crop, max_features=500).to_bytes() for crop in crops]


def per_image(store: ObjectStore, keys: list[str]) -> int:
    return len([LocalFeatures.from_bytes(store.get(key)) for key in keys])


def from_pack(store: ObjectStore, key: str, gallery_id: int, image_ids: list[int]) -> int:
    with store.open(key) as stream:
        header = pack_read_header(stream, gallery_id=gallery_id)
        pack = pack_read_body(stream, header)
    return len([pack.features_of(image_id) for image_id in image_ids])


def median_ms(action, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def measure(store: ObjectStore, name: str, blobs: list[bytes], sizes: list[int], repeats: int) -> list[tuple]:
    rows = []
    rng = np.random.default_rng(0)
    for gallery_id, size in enumerate(sizes, start=1):
        prefix = f"tenants/1/galleries/{gallery_id}"
        keys = [f"{prefix}/images/{number:064x}.rootsift" for number in range(size)]
        for number, key in enumerate(keys):
            store.put(key, blobs[number % len(blobs)])
        pack = pack_encode(gallery_id=gallery_id, index_version=1,
                           blobs=[(number + 1, blobs[number % len(blobs)]) for number in range(size)])
        pack_key = f"{prefix}/index/local-features.pack"
        store.put(pack_key, io.BytesIO(pack), length=len(pack))
        chosen = rng.choice(size, size=min(K, size), replace=False)
        candidates, image_ids = [keys[i] for i in chosen], [int(i) + 1 for i in chosen]
        images_ms = median_ms(lambda keys=candidates: per_image(store, keys), repeats)
        pack_ms = median_ms(lambda key=pack_key, pk=gallery_id, ids=image_ids: from_pack(store, key, pk, ids), repeats)
        rows.append((name, size, len(candidates), images_ms, pack_ms, len(pack)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="50,500,2000")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-s3", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    for name, blobs in (("generated demo photos", demo_blobs()), ("500-keypoint crops (timed)", full_blobs())):
        mean_bytes = sum(map(len, blobs)) / len(blobs)
        keypoints = np.mean([len(LocalFeatures.from_bytes(b)) for b in blobs])
        print(f"{name}: {keypoints:.0f} keypoints, {mean_bytes:,.0f} bytes per reference image "
              f"(24 B header + 132 B per keypoint: float16 xy + uint8 RootSIFT)")
    one = pack_encode(gallery_id=1, index_version=1, blobs=[(i + 1, b) for i, b in enumerate(blobs)])
    print(f"pack overhead: {(len(one) - sum(map(len, blobs))) / len(blobs):.0f} bytes per image (its header row)")

    rows = []
    with tempfile.TemporaryDirectory() as root:
        store = FilesystemObjectStore(Path(root), url_secret=b"bench-url-secret-0123456789abcdef")
        store.ensure_ready()
        rows += measure(store, "filesystem", blobs, sizes, args.repeats)
    if not args.no_s3:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        try:
            store = S3ObjectStore(endpoint=f"127.0.0.1:{port}", access_key="bench", secret_key="bench",
                                  bucket="bench-packs", secure=False, region="us-east-1")
            store.ensure_ready()
            rows += measure(store, "s3 (moto, loopback)", blobs, sizes, args.repeats)
        finally:
            server.stop()

    print(f"\ncold worker, K={K} candidates' features (median of {args.repeats})")
    print(f"{'store':<22}{'gallery':>8}{'per-image (K reads)':>22}{'pack (1 read)':>16}{'ratio':>8}{'pack size':>12}")
    for name, size, k, images_ms, pack_ms, pack_bytes in rows:
        print(f"{name:<22}{size:>8}{images_ms:>19.1f} ms{pack_ms:>13.1f} ms{images_ms / pack_ms:>7.1f}x"
              f"{pack_bytes / 2**20:>9.1f} MiB")


if __name__ == "__main__":
    main()
