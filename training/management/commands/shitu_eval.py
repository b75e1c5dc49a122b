"""``manage.py shitu_eval``: retrieval metrics of a model or baseline on a labelled gallery.

A thin wrapper over ``training.engine`` (the same code fine-tuning jobs use to score models).
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from training.engine.cli import BASELINES, add_eval_arguments, render_eval, run_eval


class Command(BaseCommand):
    help = "Recall@1/@5 and mAP of an extractor on a label-file gallery (leave-one-out or split)."
    requires_system_checks: list = []

    def add_arguments(self, parser):
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--model", help="exported or official extractor folder")
        which.add_argument("--baseline", choices=BASELINES)
        add_eval_arguments(parser)

    def handle(self, *args, **options):
        try:
            report = run_eval(options["model"] or options["baseline"], options["gallery"], options["labels"],
                              mode=options["mode"], threads=options["threads"],
                              batch_size=options["batch_size"], seed=options["seed"],
                              query_fraction=options["query_fraction"],
                              show_progress=not options["no_progress"])
        except (OSError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(render_eval(report, as_json=options["json"]))
