"""``manage.py shitu_local_features``: compute the RootSIFT features of reference images that lack them.

New images get them when they are embedded; this fills in galleries created before verification existed
(or images whose features could not be stored during an outage), with a progress bar.
"""
from __future__ import annotations

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Backfill the local features (geometric verification) of every ready reference image."

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
