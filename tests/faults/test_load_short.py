"""The load test's short form: sustained recognitions with concurrent imports, no error other than 429."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_short_load_has_no_errors_and_no_worker_memory_runaway():
    result = subprocess.run(
        [sys.executable, "bench/load.py", "--seconds", "25", "--clients", "4", "--imports", "2", "--json"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["ok"] > 0 and report["errors_not_429"] == 0, report
    # The memory half needs something measured: samples of a worker that exists (RSS 0 = no process found).
    samples = report["worker_rss_mb"]
    assert len(samples) > 2 and min(samples) > 0, f"no worker process was measured during the load: {samples}"
    assert report["worker_rss_growth_mb"] is not None and report["worker_rss_growth_mb"] < 200, report
