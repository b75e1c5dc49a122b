"""`manage.py shitu up|demo|stop`: run the whole platform on this machine, embedded services included."""
from __future__ import annotations

import faulthandler
import signal
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from shitu_platform import launcher
from shitu_platform.embedded import EmbeddedServiceError, ProcessGroup


def _interrupt(signum: int, frame: Any) -> None:
    """SIGTERM (docker stop, kill) stops the stack the same way Ctrl-C does."""
    raise KeyboardInterrupt


class Command(BaseCommand):
    help = "Run ShiTu Platform locally: `up` (services, worker, web), `demo` (up + demo tenant), `stop` (stop embedded servers)."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["up", "demo", "stop"])
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--web-workers", type=int, default=2)
        parser.add_argument("--no-worker", action="store_true", help="do not start the Celery workers")
        parser.add_argument("--smoke", action="store_true", help="start, check readiness and the demo login, then stop")
        parser.add_argument("--gallery", type=Path, default=None,
                            help="demo: import this folder (images + labels.txt) instead of the generated demo products")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        if action == "stop":
            launcher.embedded_redis().stop()
            launcher.embedded_postgres().stop()
            self.stdout.write("embedded PostgreSQL and Redis stopped")
            return
        self._run(demo=action == "demo", **options)

    def _run(self, *, demo: bool, host: str, port: int, web_workers: int, no_worker: bool, smoke: bool,
             gallery: Path | None = None, **_: Any) -> None:
        started = time.perf_counter()
        timings = launcher.StackTimings()
        try:
            servers = launcher.start_servers(timings)
        except EmbeddedServiceError as error:
            raise CommandError(str(error)) from error
        group = ProcessGroup(settings.VAR_DIR / "log", stream=not smoke)
        signal.signal(signal.SIGTERM, _interrupt)
        # `kill -USR1 <launcher>` prints every thread's stack: how a stuck start or stop says where it is.
        faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)
        try:
            launcher.prepare_database_and_storage(timings)
            login = self._demo_setup(timings) if demo else None
            specs = launcher.child_specs(host=host, port=port, web_workers=web_workers, with_worker=not no_worker)
            for name, spec in specs.items():
                launcher.start_child(group, name, spec)
            base_url = f"http://{host}:{port}"
            timings.measure("web ready", lambda: launcher.wait_until_ready(base_url))
            if login is not None:
                page = timings.measure("demo login", lambda: launcher.login_and_fetch_dashboard(base_url, login.username, login.password))
                if login.tenant.name not in page:
                    raise CommandError("logged in, but the dashboard does not show the demo tenant")
                if not no_worker:
                    timings.measure("demo gallery + recognition", lambda: self._demo_recognition(base_url, login, gallery))
            self._announce(base_url, login, timings, time.perf_counter() - started)
            if not smoke:
                name, code = launcher.supervise(group, specs, log=self.stdout.write)
                raise CommandError(f"{name} exited with code {code}; see {settings.VAR_DIR / 'log' / (name + '.log')}")
        except KeyboardInterrupt:
            self.stdout.write("\nstopping…")
        finally:
            stop_timings = launcher.StackTimings()
            stop_timings.measure("children", group.stop)
            stop_timings.measure("servers", servers.stop)
            self.stdout.write(f"stopped: web, worker and the embedded servers this launcher started ({stop_timings.report()})")

    def _demo_setup(self, timings: launcher.StackTimings):
        from shitu_platform.demo import demo_tenant_ensure

        return timings.measure("demo tenant", demo_tenant_ensure)

    def _demo_recognition(self, base_url: str, login: Any, folder: Path | None) -> None:
        """Import the demo gallery through the API (a real job on the worker) and recognise sample photos."""
        import random

        from shitu_platform.demo import DEMO_GALLERY_NAME, demo_api_key, demo_gallery_archive
        from shitu_platform.demo_data import DemoPhoto, demo_query_photos

        api_key = demo_api_key(login)
        archive_name, archive = demo_gallery_archive(folder)
        name = DEMO_GALLERY_NAME if folder is None else folder.name
        demo_gallery = launcher.gallery_import_via_api(base_url, api_key, name, archive_name, archive, self.stdout._out)
        if folder is None:
            photos = demo_query_photos()
        else:
            lines = (folder / "labels.txt").read_text(encoding="utf-8").splitlines()
            picked = random.Random(0).sample(lines, min(12, len(lines)))
            photos = [DemoPhoto(line.split("\t", 1)[1], line.split("\t", 1)[0], (folder / line.split("\t", 1)[0]).read_bytes())
                      for line in picked]
        rows = launcher.demo_recognise(base_url, api_key, demo_gallery["id"], photos)
        right = sum(expected == answered for expected, answered, _, _ in rows)
        self.stdout.write(f"\nrecognition of {len(rows)} sample photos (gallery “{name}”):")
        for expected, answered, score, milliseconds in rows:
            mark = "ok " if expected == answered else "MISS"
            self.stdout.write(f"  {mark} {expected[:28]:28} -> {answered[:28]:28} score {score:.3f}  {milliseconds:6.0f} ms")
        self.stdout.write(f"  {right}/{len(rows)} right\n")

    def _announce(self, base_url: str, login: Any, timings: launcher.StackTimings, total: float) -> None:
        self.stdout.write(self.style.SUCCESS(f"ShiTu Platform is up in {total:.1f}s: {base_url}/dashboard/"))
        self.stdout.write(f"  steps: {timings.report()}")
        self.stdout.write(f"  API docs: {base_url}/api/v1/docs/   admin: {base_url}/admin/   data: {settings.VAR_DIR}")
        if login is not None:
            self.stdout.write(f"  demo login: {login.username} / {login.password}  (tenant “{login.tenant.name}”)")
        self.stdout.write("  Ctrl-C stops everything.")
