"""``manage.py shitu_backfill_default``: embed every gallery that follows the platform default with it, now.

Workers do the same every minute (beat); this runs it in the foreground with a progress bar, e.g. right
after installing a new default model.
"""
from __future__ import annotations

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Embed the reference images that lack a vector of the current platform-default extractor."

    def handle(self, *args, **options):
        from tqdm import tqdm

        from galleries.services import default_model_backfill

        bar = tqdm(desc="re-embedding", unit="img")

        def progress(gallery, embedded: int) -> None:
            bar.set_postfix(gallery=gallery.name[:30])
            bar.update(embedded - bar.n)

        try:
            outcome = default_model_backfill(progress=progress)
        finally:
            bar.close()
        self.stdout.write(f"{outcome['embedded']} images of {outcome['galleries']} galleries embedded "
                          f"with {outcome['model']}")
