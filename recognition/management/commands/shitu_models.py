"""`manage.py shitu_models install <url-or-path>` and `shitu_models list`: PP-ShiTuV2 inference models."""
from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from modelhub.registry import model_key
from recognition.engine.errors import EngineError
from recognition.engine.install import install_archive
from recognition.engine.manifest import installed_models

OFFICIAL_ARCHIVES = {
    "extractor": "https://paddle-imagenet-models-name.bj.bcebos.com/dygraph/rec/models/inference/PP-ShiTuV2/general_PPLCNetV2_base_pretrained_v1.0_infer.tar",
    "detector": "https://paddle-imagenet-models-name.bj.bcebos.com/dygraph/rec/models/inference/picodet_PPLCNet_x2_5_mainbody_lite_v1.0_infer.tar",
}


class Command(BaseCommand):
    help = "Install PP-ShiTuV2 inference models (official archives by URL or file, or exported dirs) and list them."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        install = sub.add_parser("install", help="install from a URL, a .tar/.tar.gz/.zip, a directory, or 'official'")
        install.add_argument("source", help="URL, path, or 'official' for both official PP-ShiTuV2 archives")
        install.add_argument("--name", default=None)
        install.add_argument("--overwrite", action="store_true")
        install.add_argument("--timeout", type=float, default=15.0, help="download connect/read timeout, seconds")
        sub.add_parser("list", help="installed models")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        if action == "list":
            for manifest in installed_models(settings.MODELS_ROOT):
                self.stdout.write(f"{manifest.kind:9} {model_key(manifest):40} {manifest.source:8} {manifest.created}")
            return
        sources = list(OFFICIAL_ARCHIVES.values()) if options["source"] == "official" else [options["source"]]
        for source in sources:
            try:
                manifest = install_archive(
                    source, settings.MODELS_ROOT, timeout=options["timeout"], name=options["name"], overwrite=options["overwrite"]
                )
            except EngineError as error:
                raise CommandError(f"[{error.code}] {error}") from error
            self.stdout.write(self.style.SUCCESS(
                f"installed {manifest.kind} {model_key(manifest)} (input {manifest.input_size}, "
                f"features {manifest.feature_dim or '-'}) into {settings.MODELS_ROOT / manifest.kind / manifest.name}"
            ))
        self.stdout.write("restart workers (or the launcher) to load the new models")
