"""Gunicorn settings shared by the launcher and the Docker image (bind and worker count come from the command line).

Web processes are recycled after a bounded number of requests (with jitter so they do not restart together):
under sustained multipart uploads the web processes' resident size kept rising (307 -> 369 MB over 2,359
requests in bench/load.py), and a graceful recycle returns it. Inference state lives in Celery workers, so a
recycle costs only Django's import time; requests in flight finish first.
"""
import os

worker_class = "gthread"
threads = 8
timeout = 120
max_requests = int(os.environ.get("SHITU_WEB_MAX_REQUESTS", "2000"))  # 0 turns recycling off
max_requests_jitter = max_requests // 10
accesslog = "-"
