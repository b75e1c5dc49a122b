"""``manage.py shitu_eval`` and ``training.engine.cli eval`` on a generated label-file gallery."""

from __future__ import annotations

import json

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from PIL import Image

from modelhub.registry import model_directory
from training.engine.cli import main

COLOURS = {"可乐 330ml": (200, 30, 30), "green tea": (30, 180, 40), "blue": (30, 40, 200)}


@pytest.fixture
def gallery(tmp_path):
    """3 products x 3 photos (one JPEG saved as .png, as in drink-dev), labels with spaces and CJK."""
    rng = np.random.default_rng(0)
    lines = []
    for number, (name, rgb) in enumerate(COLOURS.items()):
        folder = tmp_path / "gallery" / str(number)
        folder.mkdir(parents=True)
        for n in range(3):
            pixels = np.clip(np.array(rgb) + rng.integers(-25, 26, (40, 48, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{n}.png", format="JPEG" if n == 0 else "PNG")
            lines.append(f"{number}/{n}.png\t{name}")
    labels = tmp_path / "gallery" / "labels.txt"
    labels.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return tmp_path / "gallery", labels


def test_command_prints_the_table(gallery, capsys):
    root, labels = gallery
    call_command("shitu_eval", "--gallery", str(root), "--labels", str(labels),
                 "--baseline", "colour-histogram", "--no-progress")
    lines = capsys.readouterr().out.strip().splitlines()
    header = lines[0].split()
    assert header == ["model", "mode", "images", "identities", "queries", "recall@1", "recall@5", "mAP", "seconds"]
    row = lines[2].split()
    assert row[:5] == ["colour-histogram", "leave_one_out", "9", "3", "9"]
    assert float(row[5]) == 1.0 and float(row[7]) == 1.0


def test_command_json_and_split_mode(gallery, capsys):
    root, labels = gallery
    call_command("shitu_eval", "--gallery", str(root), "--labels", str(labels),
                 "--baseline", "colour-histogram", "--mode", "split", "--json", "--no-progress")
    report = json.loads(capsys.readouterr().out)
    assert report["mode"] == "split" and report["images"] == 9 and report["identities"] == 3
    assert report["queries"] == 6  # 3 photos x 0.5 = 1.5 -> 2 queries per product (half up)
    assert {"recall@1", "recall@5", "mAP", "seconds"} <= set(report)


def test_command_errors(gallery, tmp_path):
    root, labels = gallery
    with pytest.raises(CommandError):
        call_command("shitu_eval", "--gallery", str(root), "--labels", str(tmp_path / "missing.txt"),
                     "--baseline", "colour-histogram", "--no-progress")
    with pytest.raises(CommandError):  # --model and --baseline exclude each other (neither: the served default)
        call_command("shitu_eval", "--gallery", str(root), "--labels", str(labels), "--model", str(root),
                     "--baseline", "colour-histogram")
    with pytest.raises(CommandError):  # a split without the part's products
        split = tmp_path / "split.json"
        split.write_text(json.dumps({"train": [], "held_out": ["nothing here"]}), encoding="utf-8")
        call_command("shitu_eval", "--gallery", str(root), "--labels", str(labels), "--baseline", "colour-histogram",
                     "--split", str(split), "--no-progress")


def test_engine_cli_eval(gallery, capsys):
    root, labels = gallery
    assert main(["eval", "--model", "colour-histogram", "--gallery", str(root), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["labels"] == str(labels) and report["recall@1"] == 1.0


@pytest.mark.slow
def test_command_without_a_model_scores_the_served_default_and_names_it(gallery, capsys, settings):
    root, labels = gallery
    settings.SHITU_EXTRACTOR = "colour-histogram"  # what the suite's platform serves
    call_command("shitu_eval", "--gallery", str(root), "--labels", str(labels), "--json", "--no-progress")
    assert json.loads(capsys.readouterr().out)["model"] == "colour-histogram"
    settings.SHITU_EXTRACTOR = ""  # the shipped default
    call_command("shitu_eval", "--gallery", str(root), "--labels", str(labels), "--json", "--no-progress")
    assert json.loads(capsys.readouterr().out)["model"] == str(model_directory(version=None))


def test_split_scores_one_part_and_queries_leave_their_source_out(gallery, tmp_path, capsys):
    root, labels = gallery
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": ["blue"], "held_out": ["可乐 330ml", "green tea"]}), encoding="utf-8")
    assert main(["eval", "--model", "colour-histogram", "--gallery", str(root), "--labels", str(labels),
                 "--split", str(split), "--part", "held_out", "--json", "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 6 and report["identities"] == 2 and report["part"] == "held_out"

    # queries that are copies of gallery photos: with their source left out they must match a sibling,
    # and a query whose product has no other photo would have nothing right to find
    queries = tmp_path / "queries"
    queries.mkdir()
    lines, sources = [], []
    for number in range(2):
        copy = f"q{number}.png"
        Image.open(root / str(number) / "1.png").save(queries / copy)
        lines.append(f"{copy}\t{list(COLOURS)[number]}")
        sources.append(f"{copy}\t{number}/1.png")
    (queries / "queries.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (queries / "sources.tsv").write_text("\n".join(sources) + "\n", encoding="utf-8")
    assert main(["eval", "--model", "colour-histogram", "--gallery", str(root), "--labels", str(labels),
                 "--split", str(split), "--queries", str(queries / "queries.txt"), "--json", "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["mode"] == "queries" and report["queries"] == 2 and report["sources_left_out"] == 2
    assert report["recall@1"] == 1.0 and report["mAP"] < 1.0 + 1e-9


def test_exclude_items_removes_one_gallery_item_per_query():
    from training.engine.evaluate import retrieval_metrics

    gallery = np.array([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8]], dtype=np.float32)
    labels = ["a", "b", "a"]
    kept = retrieval_metrics(gallery[:1], ["a"], gallery, labels, exclude_self=False)
    assert kept["recall@1"] == 1.0  # the query finds its own copy
    left_out = retrieval_metrics(gallery[:1], ["a"], gallery, labels, exclude_self=False, exclude_items=[0])
    assert left_out["recall@1"] == 0.0 and left_out["recall@5"] == 1.0 and left_out["mAP"] == 0.5
