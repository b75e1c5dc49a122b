"""The OpenAPI schema is served and documents every API route without generator errors."""
import pytest
import yaml
from django.core.management import call_command
from django.db import connection


@pytest.mark.django_db
def test_openapi_schema_lists_the_api_and_key_auth(client, tenant_a):
    response = tenant_a.client("owner").get("/api/v1/schema/")
    assert response.status_code == 200
    schema = yaml.safe_load(response.content)
    assert {"/api/v1/api-keys/", "/api/v1/api-keys/{id}/revoke/", "/api/v1/tenant/"} <= set(schema["paths"])
    assert "ApiKeyAuth" in schema["components"]["securitySchemes"]


def test_schema_generation_has_no_warnings(tmp_path, capsys):
    call_command("spectacular", "--file", str(tmp_path / "schema.yml"), "--validate", "--fail-on-warn")


@pytest.mark.django_db
def test_test_database_has_pgvector():
    with connection.cursor() as cursor:
        cursor.execute("SELECT '[3,4]'::vector <-> '[0,0]'::vector")
        assert cursor.fetchone()[0] == 5.0
