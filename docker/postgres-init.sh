#!/bin/sh
# Runs once, as the image's superuser, when the data volume is first initialised (docker-entrypoint-initdb.d).
# The app gets its own role WITHOUT superuser or BYPASSRLS, owning its database, so PostgreSQL row-level security
# (FORCE, applied after each migrate) holds for it; `vector` is created here because the extension is not trusted.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v app_password="$SHITU_DB_PASSWORD" <<'SQL'
CREATE ROLE shitu WITH LOGIN NOSUPERUSER NOBYPASSRLS CREATEDB PASSWORD :'app_password';
CREATE DATABASE shitu OWNER shitu;
\connect shitu
CREATE EXTENSION IF NOT EXISTS vector;
SQL
