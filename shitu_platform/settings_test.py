"""Test settings: the same settings module, pointed at a fresh embedded stack on free ports.

The ports and the scratch var dir are chosen before the base settings are read and are
exported, so child processes (Celery workers, the launcher under test) see the same stack.
"""
import os
import socket
import tempfile


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# Platform tests draw their own product photos and need answers they can predict, so by default they run
# the colour-histogram extractor and no detector; the shipped models are tested on their own
# (tests/test_shipped_models.py) and by the launcher's demo. Set these to test everything with other models.
os.environ.setdefault("SHITU_EXTRACTOR", "colour-histogram")
os.environ.setdefault("SHITU_DETECTOR", "none")
# Under pytest-xdist each test process runs its own stack (database, Redis and so Celery queues, object store):
# it drops the ports and var dir inherited from the controlling process. Its children (workers, the launcher under
# test) inherit SHITU_TEST_STACK_FOR and keep the stack they were started on.
_xdist_worker = os.environ.get("PYTEST_XDIST_WORKER")
if _xdist_worker and os.environ.get("SHITU_TEST_STACK_FOR") != _xdist_worker:
    for _name in ("SHITU_EMBEDDED_PG_PORT", "SHITU_EMBEDDED_REDIS_PORT", "SHITU_VAR_DIR"):
        os.environ.pop(_name, None)
    os.environ["SHITU_TEST_STACK_FOR"] = _xdist_worker
os.environ.setdefault("SHITU_EMBEDDED_PG_PORT", str(_free_port()))
os.environ.setdefault("SHITU_EMBEDDED_REDIS_PORT", str(_free_port()))
if "SHITU_VAR_DIR" not in os.environ:
    scratch = tempfile.mkdtemp(prefix="shitu-test-")
    os.chmod(scratch, 0o711)  # PostgreSQL runs as an unprivileged user when we are root: it must enter
    os.environ["SHITU_VAR_DIR"] = scratch

from shitu_platform.settings import *  # noqa: E402,F401,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests only
WHITENOISE_USE_FINDERS = True  # serve static files straight from the apps; no collectstatic in tests
WHITENOISE_AUTOREFRESH = True
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}  # noqa: F405
