"""``manage.py shitu_eval``: retrieval metrics of a model or baseline on a labelled gallery.

A thin wrapper over ``training.engine`` (the same code fine-tuning jobs use to score models).
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from modelhub.registry import BASELINE_EXTRACTOR_NAME, model_directory
from training.engine.cli import BASELINES, add_eval_arguments, render_eval, run_eval


def served_default_extractor() -> str:
    """``SHITU_EXTRACTOR`` when set, else the shipped default: the folder (or baseline) recognition uses."""
    directory = model_directory(version=None)
    return str(directory) if directory is not None else BASELINE_EXTRACTOR_NAME


class Command(BaseCommand):
    help = ("Recall@1/@5 and mAP of an extractor on a label-file gallery (leave-one-out or split); with --pipeline "
            "the whole recognition (detector, verification, calibrated 'no match', unknown products, scenes).")
    requires_system_checks: list = []

    def add_arguments(self, parser):
        which = parser.add_mutually_exclusive_group()
        which.add_argument("--model", help="exported or official extractor folder "
                                           "(default: the extractor the platform serves by default)")
        which.add_argument("--baseline", choices=BASELINES)
        add_eval_arguments(parser)

    def handle(self, *args, **options):
        model = options["model"] or options["baseline"] or served_default_extractor()
        try:
            report = run_eval(model, options["gallery"], options["labels"],
                              mode=options["mode"], threads=options["threads"],
                              batch_size=options["batch_size"], seed=options["seed"],
                              query_fraction=options["query_fraction"],
                              show_progress=not options["no_progress"],
                              split=options["split"], part=options["part"], queries=options["queries"],
                              pipeline=options["pipeline"], detector=options["detector"],
                              unknown=options["unknown"], scenes=options["scenes"])
        except (OSError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(render_eval(report, as_json=options["json"]))
