"""The shelf builder's boxes are exactly the visible tiles, and its target is the photographed product."""
import json

import numpy as np
import pytest
from PIL import Image

from training.data_builder.shelf import build, render_shelf
from training.engine.det_data import DetectionDataset

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 60), "blue": (40, 60, 220), "yellow": (240, 220, 40),
           "violet": (150, 40, 200), "cyan": (40, 210, 220)}


def _photo(colour, size=(120, 200)) -> np.ndarray:
    return np.full((size[1], size[0], 3), colour, np.uint8)


@pytest.mark.parametrize("seed", range(6))
def test_every_box_is_the_tight_box_of_its_visible_tile_and_the_target_is_in_front(seed):
    rng = np.random.default_rng(seed)
    neighbours = [(_photo(colour), name) for name, colour in COLOURS.items() if name != "red"]
    scene = render_shelf(_photo(COLOURS["red"]), "red", neighbours, _photo((128, 128, 128)), rng, photometric=False)
    assert len(scene.boxes) == len(scene.labels) >= 2 and scene.labels[scene.target] == "red"
    for index, (box, label) in enumerate(zip(scene.boxes, scene.labels)):
        ys, xs = np.nonzero(scene.owner == index)
        assert [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] == box  # drawn where the tile shows, exactly
        assert (scene.image[ys, xs] == COLOURS[label]).all()  # and what shows there is that product
    areas = [(b[2] - b[0]) * (b[3] - b[1]) for b in scene.boxes]
    assert areas[scene.target] == max(areas)  # the target is the biggest tile ...
    target = scene.boxes[scene.target]
    target_pixels = (scene.owner == scene.target).sum()
    assert target_pixels == areas[scene.target]  # ... in front of every other (fully visible) ...
    height, width = scene.owner.shape
    centre_x, centre_y = (target[0] + target[2]) / 2 / width, (target[1] + target[3]) / 2 / height
    assert abs(centre_x - 0.5) <= 0.11 and abs(centre_y - 0.5) <= 0.11  # ... near the centre
    share = areas[scene.target] / (width * height)
    assert 0.05 <= share <= 0.40 + 1e-6


@pytest.mark.slow
def test_build_writes_consistent_seeded_files(tmp_path):
    root = tmp_path / "photos"
    (root / "img").mkdir(parents=True)
    lines = []
    for name, colour in COLOURS.items():
        for view in range(2):
            Image.fromarray(_photo(colour)).save(root / "img" / f"{name}{view}.png")
            lines.append(f"img/{name}{view}.png\t{name}")
    (root / "labels.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    first = build(root / "labels.txt", tmp_path / "a", products={"red", "green", "blue", "yellow"}, seed=3,
                  show_progress=False)
    build(root / "labels.txt", tmp_path / "b", products={"red", "green", "blue", "yellow"}, seed=3, show_progress=False)
    assert first["scenes"] == 8
    records = [json.loads(line) for line in (tmp_path / "a" / "boxes.jsonl").read_text().splitlines()]
    queries = (tmp_path / "a" / "queries.txt").read_text().splitlines()
    sources = (tmp_path / "a" / "sources.tsv").read_text().splitlines()
    assert len(records) == len(queries) == len(sources) == 8
    for record, query, source in zip(records, queries, sources):
        assert query.split("\t") == [record["file"], record["labels"][record["target"]]]
        assert source.split("\t")[1].startswith(f"img/{record['labels'][record['target']]}")
        assert set(record["labels"]) <= {"red", "green", "blue", "yellow"}  # neighbours from the same part only
    dataset = DetectionDataset.from_jsonl(tmp_path / "a" / "boxes.jsonl")
    assert [s.target for s in dataset.samples] == [r["target"] for r in records]
    assert (tmp_path / "a" / "boxes.jsonl").read_bytes() == (tmp_path / "b" / "boxes.jsonl").read_bytes()
    assert (tmp_path / "a" / records[0]["file"]).read_bytes() == (tmp_path / "b" / records[0]["file"]).read_bytes()
