"""`manage.py shitu_index check|rebuild|prune`: gallery Faiss caches against pgvector, and the per-gallery HNSW indexes.

check    per gallery and model: vectors in pgvector, in the cache a worker would load (the persisted one, refreshed
         if its version is behind), missing, extra, and top-1 agreement / recall@k of the cache against pgvector's
         exact search on a sample of stored vectors. Exits 1 on any drift or agreement below --min-agreement.
rebuild  rebuild the caches from pgvector and persist them; also builds the partial HNSW index of galleries above
         the size threshold (CREATE INDEX CONCURRENTLY, minutes at 100k vectors) unless --no-pgvector-index.
prune    drop the HNSW indexes of deleted galleries and retired models.
"""
from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from galleries.indexing import agreement, drift, rebuild
from galleries.models import Embedding, Gallery
from galleries.pgvector_search import ensure_pgvector_index, pgvector_index_name, pgvector_indexes, prune_pgvector_indexes


class Command(BaseCommand):
    help = "Check gallery index caches against pgvector (exit 1 on drift), rebuild them, prune stale HNSW indexes."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        for name, text in (("check", "compare caches with pgvector"), ("rebuild", "rebuild caches from pgvector and persist")):
            action = sub.add_parser(name, help=text)
            action.add_argument("--gallery", type=int, action="append", default=[], help="gallery id (repeatable)")
            action.add_argument("--all", action="store_true", help="every gallery of every tenant")
            action.add_argument("--model-key", default=None, help="one extractor key (default: every key with vectors)")
            if name == "check":
                action.add_argument("--sample", type=int, default=200, help="stored vectors to query (0: skip)")
                action.add_argument("-k", type=int, default=5)
                action.add_argument("--min-agreement", type=float, default=0.95, help="lowest acceptable top-1 agreement")
            else:
                action.add_argument("--no-pgvector-index", action="store_true", help="do not build HNSW indexes")
        sub.add_parser("prune", help="drop HNSW indexes of deleted galleries and retired models")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        if action == "prune":
            dropped = prune_pgvector_indexes()
            self.stdout.write(f"dropped {len(dropped)} index(es)" + (f": {', '.join(dropped)}" if dropped else ""))
            return
        pairs = self._targets(options)
        if action == "check":
            self._check(pairs, options)
        else:
            self._rebuild(pairs, options)

    def _targets(self, options: dict[str, Any]) -> list[tuple[Gallery, str]]:
        if not options["all"] and not options["gallery"]:
            raise CommandError("name galleries with --gallery ID, or use --all")
        # A platform staff tool: it walks every tenant's galleries.
        galleries = Gallery.unscoped.all().select_related("tenant").order_by("pk")
        if not options["all"]:
            galleries = galleries.filter(pk__in=options["gallery"])
            missing = set(options["gallery"]) - {g.pk for g in galleries}
            if missing:
                raise CommandError(f"no gallery with id {', '.join(map(str, sorted(missing)))}")
        pairs = []
        for gallery in galleries:
            keys = [options["model_key"]] if options["model_key"] else sorted(
                set(Embedding.objects.for_tenant(gallery.tenant).filter(gallery=gallery).values_list("model_key", flat=True))
            )
            pairs.extend((gallery, key) for key in keys)
        return pairs

    def _check(self, pairs: list[tuple[Gallery, str]], options: dict[str, Any]) -> None:
        indexed = {index.name: index.valid for index in pgvector_indexes()}
        self.stdout.write(
            f"{'gallery':>7} {'tenant':>6} {'model':<28} {'version':>7} {'pgvector':>8} {'cache':>8} {'missing':>7} "
            f"{'extra':>6} {'top1':>6} {'recall@' + str(options['k']):>8}  hnsw"
        )
        failures = []
        for gallery, model_key in pairs:
            report = drift(gallery, model_key)
            top1 = recall = "-"
            if options["sample"] > 0:
                agreed = agreement(gallery, model_key, sample=options["sample"], k=options["k"])
                top1, recall = f"{agreed.top1_agreement:.3f}", f"{agreed.recall_at_k:.3f}"
                if agreed.sampled and agreed.top1_agreement < options["min_agreement"]:
                    failures.append(f"gallery {gallery.pk} {model_key}: top-1 agreement {agreed.top1_agreement:.3f}")
            if report.drift:
                failures.append(f"gallery {gallery.pk} {model_key}: {report.missing_in_cache} missing, {report.extra_in_cache} extra")
            state = indexed.get(pgvector_index_name(gallery.pk, model_key))
            hnsw = "-" if state is None else ("valid" if state else "INVALID")
            self.stdout.write(
                f"{gallery.pk:>7} {gallery.tenant_id:>6} {model_key[:28]:<28} {gallery.index_version:>7} {report.in_database:>8} "
                f"{report.in_cache:>8} {report.missing_in_cache:>7} {report.extra_in_cache:>6} {top1:>6} {recall:>8}  {hnsw}"
            )
        if failures:
            raise CommandError("drift found: " + "; ".join(failures), returncode=1)
        self.stdout.write(self.style.SUCCESS(f"{len(pairs)} cache(s) checked, no drift"))

    def _rebuild(self, pairs: list[tuple[Gallery, str]], options: dict[str, Any]) -> None:
        for gallery, model_key in pairs:
            total = Embedding.objects.for_tenant(gallery.tenant).filter(gallery=gallery, model_key=model_key).count()
            with tqdm(total=total, unit="vec", desc=f"gallery {gallery.pk} {model_key}", leave=False) as bar:
                entry = rebuild(gallery, model_key, progress=bar.update)
            self.stdout.write(
                f"gallery {gallery.pk} {model_key}: {len(entry.index)} vectors, {entry.index.index_type}, version {entry.version}, persisted"
            )
            if not options["no_pgvector_index"]:
                name = ensure_pgvector_index(gallery, model_key)
                if name:
                    self.stdout.write(f"gallery {gallery.pk} {model_key}: HNSW index {name} ready")
