"""``manage.py shitu_local_features``: compute the RootSIFT features of reference images that lack them, then pack
every gallery's features (``galleries.local_feature_pack``) so cold workers read them in one request.

New images get them when they are embedded, and workers repack a gallery after it changes; this fills in galleries
created before verification or packs existed (or images whose features could not be stored during an outage),
with progress bars.
"""
from __future__ import annotations

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Backfill the local features (geometric verification) of every ready reference image, then each gallery's pack."

    def handle(self, *args, **options):
        from tqdm import tqdm

        from galleries.local_features import images_without_local_features
        from galleries.models import ReferenceImage
        from galleries.services import reference_local_features_backfill

        total = images_without_local_features(ReferenceImage.unscoped.all()).count()
        bar = tqdm(total=total, desc="local features", unit="img")
        try:
            done = reference_local_features_backfill(progress=lambda n: bar.update(n - bar.n))
        finally:
            bar.close()
        self.stdout.write(f"local features computed for {done} of {total} reference images")

        from galleries.local_feature_pack import local_feature_pack_build
        from galleries.models import Gallery

        galleries = list(Gallery.unscoped.select_related("tenant").order_by("pk"))
        packed = images = 0
        for gallery in tqdm(galleries, desc="feature packs", unit="gallery"):
            built = local_feature_pack_build(gallery)
            if built is not None:
                packed, images = packed + 1, images + built.images
        self.stdout.write(f"local feature packs built for {packed} of {len(galleries)} galleries ({images} images)")
