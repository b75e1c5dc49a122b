"""Import progress moves row by row: every state a real worker commits is logged by a database trigger, so the test
sees what a polling page could see, without racing the worker."""
import io
import time

import pytest
from django.db import connection

from galleries.models import ImportJob
from shitu_platform.tenancy.models import Tenant
from tests.galleries.test_imports import labelled_zip

pytestmark = pytest.mark.slow


@pytest.fixture()
def committed_progress(celery_worker):
    """(status, next_row, total_rows) of each committed write to an import job, in commit order."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE test_import_progress_log (id serial PRIMARY KEY, job_id bigint, status text,"
                       " next_row integer, total_rows integer)")
        cursor.execute("""CREATE FUNCTION test_import_progress_log_row() RETURNS trigger AS $$
            BEGIN INSERT INTO test_import_progress_log (job_id, status, next_row, total_rows)
                  VALUES (NEW.id, NEW.status, NEW.next_row, NEW.total_rows); RETURN NEW; END $$ LANGUAGE plpgsql""")
        cursor.execute("CREATE TRIGGER test_import_progress_log AFTER INSERT OR UPDATE ON galleries_importjob"
                       " FOR EACH ROW EXECUTE FUNCTION test_import_progress_log_row()")

    def states(job_id: int) -> list[tuple[str, int, int]]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT status, next_row, total_rows FROM test_import_progress_log WHERE job_id = %s ORDER BY id",
                           [job_id])
            return cursor.fetchall()

    yield states
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER IF EXISTS test_import_progress_log ON galleries_importjob")
        cursor.execute("DROP FUNCTION IF EXISTS test_import_progress_log_row()")
        cursor.execute("DROP TABLE IF EXISTS test_import_progress_log")


def _import(world, n_products: int, per_product: int) -> tuple[int, int]:
    client = world.key_client("member")
    gallery = client.post("/api/v1/galleries/", {"name": "Progress"}, format="json").json()["id"]
    handle = io.BytesIO(labelled_zip(n_products, per_product))
    handle.name = "shelf.zip"
    job_id = client.post(f"/api/v1/galleries/{gallery}/imports/", {"archive": handle}, format="multipart").json()["id"]
    deadline = time.monotonic() + 120
    while ImportJob.objects.for_tenant(world.tenant).get(pk=job_id).status not in ("done", "failed"):
        assert time.monotonic() < deadline, "the import did not finish"
        time.sleep(0.2)
    return gallery, job_id


def _distinct(values: list[int]) -> list[int]:
    """Consecutive repeats dropped (a heartbeat rewrites the row without progress)."""
    return [value for index, value in enumerate(values) if index == 0 or values[index - 1] != value]


def test_small_import_advances_one_row_at_a_time(tenant_a, committed_progress):
    gallery, job_id = _import(tenant_a, 3, 2)  # 6 rows: fewer than one extractor batch (16)
    states = committed_progress(job_id)
    running = [(next_row, total) for status, next_row, total in states if status == "running"]
    # the page can say "0 of 6" before the first row is done, then 1 of 6, 2 of 6, ... (not 0 % and then done)
    assert (0, 6) in running, states
    assert _distinct([next_row for next_row, total in running if total == 6]) == [0, 1, 2, 3, 4, 5, 6], states
    assert states[-1][0] == "done" and states[-1][1:] == (6, 6)

    # The gallery page lists the finished import as rows done of rows read, at times in the tenant's zone.
    Tenant.objects.filter(pk=tenant_a.tenant.pk).update(time_zone="Asia/Shanghai")
    page = tenant_a.client("member").get(f"/dashboard/galleries/{gallery}/").content.decode()
    assert "6 of 6 rows · 6 imported · 0 skipped · 0 failed" in page
    row = page[page.index('data-testid="import-table"'):]
    assert row.count('title="Asia/Shanghai (UTC+0800)"') == 2 and " CST</time>" in row  # started and finished


def test_large_import_moves_in_small_steps(tenant_a, committed_progress):
    _, job_id = _import(tenant_a, 20, 6)  # 120 rows: steps of at most 1/40 of the import
    running = _distinct([next_row for status, next_row, total in committed_progress(job_id) if status == "running" and total == 120])
    steps = [after - before for before, after in zip(running, running[1:]) if after != before]
    assert running[0] == 0 and running[-1] == 120 and steps and max(steps) <= 3, running
