"""The suite's file order (tests/support/file_order.py): longest files first, each file's tests together and in order."""
import json
from types import SimpleNamespace

from tests.support import file_order


def _items(*nodeids: str) -> list:
    return [SimpleNamespace(nodeid=nodeid) for nodeid in nodeids]


def test_longest_files_go_first_and_keep_their_tests_in_order(tmp_path, monkeypatch):
    seconds = tmp_path / "file_seconds.json"
    seconds.write_text(json.dumps({"tests/a.py": 1.0, "tests/b.py": 30.0, "tests/c.py": 5.0}))
    monkeypatch.setattr(file_order, "SECONDS_FILE", seconds)
    items = _items("tests/a.py::one", "tests/a.py::two", "tests/new.py::x", "tests/b.py::one", "tests/c.py::one",
                   "tests/b.py::two[1]", "tests/b.py::two[0]")
    file_order.pytest_collection_modifyitems(items)
    # b (30 s), then c (5 s) and the unlisted file at the median (5 s) in collection order, then a (1 s)
    assert [item.nodeid for item in items] == ["tests/b.py::one", "tests/b.py::two[1]", "tests/b.py::two[0]",
                                               "tests/new.py::x", "tests/c.py::one", "tests/a.py::one", "tests/a.py::two"]


def test_a_recorded_run_updates_the_seconds_of_the_files_it_ran(tmp_path, monkeypatch):
    seconds = tmp_path / "file_seconds.json"
    seconds.write_text(json.dumps({"tests/a.py": 9.0, "tests/other.py": 2.0}))  # an earlier run's
    monkeypatch.setattr(file_order, "SECONDS_FILE", seconds)
    recorder = file_order._Recorder()
    for nodeid, duration in (("tests/a.py::one", 0.25), ("tests/a.py::one", 1.0), ("tests/b.py::x", 3.0)):
        recorder.pytest_runtest_logreport(SimpleNamespace(nodeid=nodeid, duration=duration))
    recorder.pytest_sessionfinish()
    recorded = json.loads(seconds.read_text())
    assert recorded == {"tests/b.py": 3.0, "tests/other.py": 2.0, "tests/a.py": 1.2}  # a's replaced, other kept
    assert list(recorded) == ["tests/b.py", "tests/other.py", "tests/a.py"]
