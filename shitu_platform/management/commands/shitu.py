"""`manage.py shitu up|demo|stop`: run the whole platform on this machine, embedded services included."""
from __future__ import annotations

import faulthandler
import os
import signal
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from shitu_platform import launcher
from shitu_platform.embedded import EmbeddedServiceError, ProcessGroup

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _interrupt(signum: int, frame: Any) -> None:
    """Ctrl-C, SIGTERM (docker stop, kill) and a closed terminal all stop the stack the same way."""
    raise KeyboardInterrupt


def _still_stopping(signum: int, frame: Any) -> None:
    os.write(2, b"\nstill stopping (each step is bounded; a few seconds more)\n")


def _take_stop_signals() -> None:
    """Own the signals that mean "stop" even when they arrive ignored or blocked: a shell script starting the launcher
    in the background hands it SIGINT ignored, and Python then leaves Ctrl-C ignored. SIGHUP stays ignored under
    nohup, which asks for exactly that."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, set(STOP_SIGNALS))
    for signum in STOP_SIGNALS:
        if signum != signal.SIGHUP or signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, _interrupt)


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
        _take_stop_signals()
        # `kill -USR1 <launcher>` prints every thread's stack: how a stuck start or stop says where it is.
        faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)
        console = launcher.Console()
        timings = launcher.StackTimings(announce=lambda step: console.status(f"starting… {step}"))
        servers = launcher.EmbeddedServers()
        log_dir = Path(settings.VAR_DIR) / "log"
        group = ProcessGroup(log_dir)
        try:
            launcher.start_servers(timings, servers)
            launcher.prepare_database_and_storage(timings)
            login = self._demo_setup(timings) if demo else None
            specs = launcher.child_specs(host=host, port=port, web_workers=web_workers, with_worker=not no_worker)
            base_url = f"http://{host}:{port}"
            watch = launcher.ReadyWatch()
            watch.start(group, "web", specs["web"])
            timings.measure("web ready", lambda: launcher.wait_until_ready(base_url))
            # The workers start once the web answers: on 2 cores their imports would double the wait for the dashboard.
            for name, spec in specs.items():
                if name != "web":
                    watch.start(group, name, spec)
            samples = None
            if login is not None:
                page = timings.measure("demo login", lambda: launcher.login_and_fetch_dashboard(base_url, login.username, login.password))
                if login.tenant.name not in page:
                    raise CommandError("logged in, but the dashboard does not show the demo tenant")
                if not no_worker:
                    samples = timings.measure("demo gallery", lambda: self._demo_gallery_and_samples(base_url, login, gallery, console))
            logs = [log_dir / f"{name}.log" for name in [*specs, *(["demo"] if samples else [])]]
            logs += [server.log_path for server in (servers.postgres, servers.redis) if server is not None]
            self._announce(console, base_url, login, samples, timings, time.perf_counter() - started, logs)
            if smoke and not no_worker:
                self._wait_for_children(console, watch, started, log_dir)
            if not smoke:
                name, code = launcher.supervise(group, specs, log=lambda text: self._child_event(console, text),
                                                tick=self._status_updater(console, watch, specs))
                raise CommandError(f"{name} exited with code {code}; see {launcher.display_path(log_dir / (name + '.log'))}")
        except KeyboardInterrupt:
            console.line("\nstopping…")
        except (EmbeddedServiceError, launcher.LauncherError) as error:
            raise CommandError(f"{error}\n(logs: {launcher.display_path(log_dir)})") from error
        finally:
            for signum in STOP_SIGNALS:
                if signal.getsignal(signum) is _interrupt:
                    signal.signal(signum, _still_stopping)  # a second Ctrl-C must not leave servers half-stopped
            stop_timings = launcher.StackTimings()
            stop_timings.measure("children", group.stop)
            stop_timings.measure("servers", servers.stop)
            console.line(f"stopped: web, workers and the embedded servers this launcher started ({stop_timings.report()})")

    def _status_updater(self, console: launcher.Console, watch: launcher.ReadyWatch, specs: dict) -> Callable[[], None]:
        """The status line while running: since when, and which children are still starting."""
        since = f"running since {datetime.now():%H:%M:%S}"

        def update() -> None:
            waiting = watch.waiting_for()
            ready = [name for name in specs if name not in waiting]
            console.status(f"{since}: {', '.join(ready)} ready" + (f"; starting {', '.join(waiting)}…" if waiting else ""))

        update()
        return update

    def _wait_for_children(self, console: launcher.Console, watch: launcher.ReadyWatch, started: float, log_dir: Path,
                           timeout: float = 120) -> None:
        """Smoke runs also check that the workers and beat come up (they start after the web, so after the banner)."""
        deadline = time.monotonic() + timeout
        while waiting := watch.waiting_for():
            if time.monotonic() > deadline:
                logs = ", ".join(launcher.display_path(log_dir / f"{name}.log") for name in waiting)
                raise CommandError(f"not ready after {timeout:.0f}s: {', '.join(waiting)} (see {logs})")
            time.sleep(0.2)
        console.line(f"  workers and beat ready in {time.perf_counter() - started:.1f}s")

    def _child_event(self, console: launcher.Console, text: str) -> None:
        console.error(f"{datetime.now():%H:%M:%S} {text}")

    def _demo_setup(self, timings: launcher.StackTimings):
        from shitu_platform.demo import demo_tenant_ensure

        return timings.measure("demo tenant", demo_tenant_ensure)

    def _demo_gallery_and_samples(self, base_url: str, login: Any, folder: Path | None, console: launcher.Console) -> str:
        """Import the demo gallery through the API (a real job on the worker) and, on its first start only, recognise
        sample photos; returns the banner's line about them."""
        import random

        from shitu_platform.demo import (DEMO_GALLERY_NAME, demo_api_key, demo_archive_name, demo_gallery_archive,
                                         demo_samples_posted, demo_samples_record)
        from shitu_platform.demo_data import DemoPhoto, demo_query_photos

        api_key = demo_api_key(login)
        name = DEMO_GALLERY_NAME if folder is None else folder.name

        def import_progress(done: int, total: int | None) -> None:
            console.status(f"starting… importing gallery “{name}”: {done}/{total or '?'} images")

        demo_gallery = launcher.gallery_import_via_api(base_url, api_key, name, demo_archive_name(folder),
                                                       lambda: demo_gallery_archive(folder)[1], progress=import_progress)
        demo_log = launcher.display_path(Path(settings.VAR_DIR) / "log" / "demo.log")
        posted = demo_samples_posted(demo_gallery)
        if posted is not None:
            return f"sample photos: recognised on the first start ({posted['summary']}); details in {demo_log}"
        if folder is None:
            photos = demo_query_photos()
        else:
            lines = (folder / "labels.txt").read_text(encoding="utf-8").splitlines()
            picked = random.Random(0).sample(lines, min(12, len(lines)))
            photos = [DemoPhoto(line.split("\t", 1)[1], line.split("\t", 1)[0], (folder / line.split("\t", 1)[0]).read_bytes())
                      for line in picked]
        console.status(f"starting… recognising {len(photos)} sample photos")
        rows = launcher.demo_recognise(base_url, api_key, demo_gallery["id"], photos)
        summary = launcher.SampleSummary.of(rows).describe()
        with open(Path(settings.VAR_DIR) / "log" / "demo.log", "a", encoding="utf-8") as log:
            log.write(f"{datetime.now():%Y-%m-%d %H:%M:%S} sample photos sent to gallery “{name}”: {summary}\n"
                      f"{launcher.sample_table(rows)}\n")
        demo_samples_record(demo_gallery, summary=summary)
        return f"sample photos: {summary} (first start only; details in {demo_log})"

    def _announce(self, console: launcher.Console, base_url: str, login: Any, samples: str | None,
                  timings: launcher.StackTimings, total: float, logs: list[Path]) -> None:
        console.line(console.bold(f"ShiTu Platform is up in {total:.1f}s: {base_url}/dashboard/"))
        if login is not None:
            console.line(f"  demo login: {login.username} / {login.password}  (tenant “{login.tenant.name}”)")
        if samples is not None:
            console.line(f"  {samples}")
        console.line(f"  API docs: {base_url}/api/v1/docs/   admin: {base_url}/admin/")
        console.line(f"  logs: {launcher.display_paths(logs)}")
        console.line(f"  steps: {timings.report()}")
        console.line("  Ctrl-C stops everything.")
