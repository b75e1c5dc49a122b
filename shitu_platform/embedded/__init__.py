"""The embedded stack: PostgreSQL 18 + pgvector and Redis as local processes we start and stop.

Pure Python, no Django: the launcher starts these before settings are loaded, and a developer can
drive them from a shell:

    from pathlib import Path
    from shitu_platform.embedded import EmbeddedPostgres, PostgresSettings
    url = EmbeddedPostgres(PostgresSettings(data_dir=Path("var/postgres"))).start()

Both servers are detached from the Python process that starts them; stop() works from any process.
"""
from shitu_platform.embedded.postgres import EmbeddedPostgres, PostgresSettings
from shitu_platform.embedded.redis import EmbeddedRedis, RedisSettings, find_redis_server
from shitu_platform.embedded.supervisor import (
    EmbeddedServiceError,
    PermissionProblem,
    PortInUse,
    ProcessGroup,
    ServiceNotFound,
    ServiceStartFailed,
    free_port,
)

__all__ = [
    "EmbeddedPostgres",
    "EmbeddedRedis",
    "EmbeddedServiceError",
    "PermissionProblem",
    "PortInUse",
    "PostgresSettings",
    "ProcessGroup",
    "RedisSettings",
    "ServiceNotFound",
    "ServiceStartFailed",
    "find_redis_server",
    "free_port",
]
