"""Gunicorn settings shared by the launcher and the Docker image (bind and worker count come from the command line).

Web processes are recycled after a bounded number of requests (with jitter so they do not restart together):
under sustained multipart uploads the web processes' resident size kept rising (307 -> 369 MB over 2,359
requests in bench/load.py), and a graceful recycle returns it. Two glibc malloc arenas (the launcher's
MALLOC_ARENA_MAX) cut that growth by about a third; what is left is not held by Python objects (README, Limits).
Inference state lives in Celery workers, so a recycle costs only a fork; requests in flight finish first.

The app is loaded once in the master and its URLconf imported there (views, serializers, the API schema's
modules), so every web process is forked ready to answer: with two processes importing Django side by side, a
restart of the demo waited twice as long for its first page on a busy 2-core machine (bench/embedded_startup.py).
Nothing opens a connection at import; Django connects per process on the first query.
"""
import os

worker_class = "gthread"
threads = 8
timeout = 120
max_requests = int(os.environ.get("SHITU_WEB_MAX_REQUESTS", "2000"))  # 0 turns recycling off
max_requests_jitter = max_requests // 10
accesslog = "-"
preload_app = True
# Gunicorn 27's control socket defaults to one path per user ($HOME/.gunicorn/gunicorn.ctl), shared by every stack the
# user runs (demo, tests); nothing here uses it.
control_socket_disable = True


def when_ready(server) -> None:
    """In the master, after the app is loaded and before the first fork: import what the first request would."""
    if server.cfg.preload_app:
        from django.urls import get_resolver

        get_resolver().url_patterns  # imports every urls module and the views, serializers and schema they name
