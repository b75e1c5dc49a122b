"""``manage.py shitu_eval`` and ``training.engine.cli eval`` on a generated label-file gallery."""

from __future__ import annotations

import json

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from PIL import Image

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
    with pytest.raises(CommandError):  # --model or --baseline is required
        call_command("shitu_eval", "--gallery", str(root), "--labels", str(labels))


def test_engine_cli_eval(gallery, capsys):
    root, labels = gallery
    assert main(["eval", "--model", "colour-histogram", "--gallery", str(root), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["labels"] == str(labels) and report["recall@1"] == 1.0
