"""Test files in the order that keeps both test processes busy to the end: the longest first.

pytest-xdist (`--dist loadfile`) hands out whole files, by default those with the most tests first. The longest
files hold few tests (a load run, a stack with its faults, the drink-dev gates), so they came last and one process
ran them alone while the other sat idle. Longest-first keeps the short files for the end, where they even out.

The seconds per file come from `file_seconds.json` beside this module (setup, call and teardown of every test,
from a whole-suite run); a file missing from it counts as the median. Refresh it after a change that moves a
file's time a lot: `./shitu test --record-file-seconds` (a run of some files updates theirs).
"""
from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path

import pytest

SECONDS_FILE = Path(__file__).with_name("file_seconds.json")


def _file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--record-file-seconds", action="store_true",
                     help=f"write each test file's seconds to {SECONDS_FILE.name} (orders the next runs' files)")


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("record_file_seconds") and not hasattr(config, "workerinput"):  # xdist's controller only
        config.pluginmanager.register(_Recorder(), "file-seconds-recorder")


@pytest.hookimpl(trylast=True)  # after the other hooks have marked and deselected
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    known = json.loads(SECONDS_FILE.read_text(encoding="utf-8")) if SECONDS_FILE.exists() else {}
    default = statistics.median(known.values()) if known else 0.0
    first_seen: dict[str, int] = {}
    for index, item in enumerate(items):
        first_seen.setdefault(_file_of(item.nodeid), index)
    # Stable: a file's tests keep their order and stay together; equal files keep the collection order.
    items.sort(key=lambda item: (-known.get(_file_of(item.nodeid), default), first_seen[_file_of(item.nodeid)]))


class _Recorder:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.seconds[_file_of(report.nodeid)] += report.duration

    def pytest_sessionfinish(self) -> None:
        """Merged into the file: a run of a few files updates theirs and keeps the others'."""
        if self.seconds:
            known = json.loads(SECONDS_FILE.read_text(encoding="utf-8")) if SECONDS_FILE.exists() else {}
            known.update({name: round(seconds, 1) for name, seconds in self.seconds.items()})
            ordered = dict(sorted(known.items(), key=lambda kv: -kv[1]))
            SECONDS_FILE.write_text(json.dumps(ordered, indent=1) + "\n", encoding="utf-8")
