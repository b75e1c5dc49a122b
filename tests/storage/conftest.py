"""Fixtures for the object-store suite: one real S3-protocol server (moto) per session on loopback."""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shitu_platform.storage import FilesystemObjectStore, ObjectStore, S3ObjectStore

URL_SECRET = b"test-url-secret-0123456789abcdef"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto server speaking the S3 wire protocol, so the minio SDK is exercised end to end."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop()


def _make_s3_store(endpoint: str, bucket: str | None = None, **options: float) -> S3ObjectStore:
    return S3ObjectStore(
        endpoint=endpoint,
        access_key="testing",
        secret_key="testing",
        bucket=bucket or f"test-{uuid.uuid4().hex[:16]}",
        region="us-east-1",
        **options,
    )


@pytest.fixture
def filesystem_store(tmp_path: Path) -> FilesystemObjectStore:
    store = FilesystemObjectStore(tmp_path / "objects", url_secret=URL_SECRET)
    store.ensure_ready()
    return store


@pytest.fixture
def s3_store(s3_endpoint: str) -> S3ObjectStore:
    store = _make_s3_store(s3_endpoint)  # a fresh bucket per test keeps tests independent
    store.ensure_ready()
    return store


@pytest.fixture(params=["filesystem", "s3"])
def store(request: pytest.FixtureRequest) -> ObjectStore:
    """The same behavioural tests run against both backends."""
    return request.getfixturevalue(f"{request.param}_store")


# Helpers as fixtures: `from conftest import ...` would clash with other test folders' conftest modules.
@pytest.fixture
def url_secret() -> bytes:
    return URL_SECRET


@pytest.fixture
def make_s3_store() -> Callable[..., S3ObjectStore]:
    """Builds an S3 store for any endpoint (a fresh bucket name unless one is given)."""
    return _make_s3_store


@pytest.fixture
def free_port() -> int:
    """A loopback port nobody listens on."""
    return _free_port()
