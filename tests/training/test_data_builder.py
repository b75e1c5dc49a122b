"""The synthetic data builder, on a tiny fixture source drawn here (no network, no npm)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from training.data_builder import build as builder
from training.data_builder import sources
from training.data_builder.render import cylinder_warp
from training.engine.dataset import ImageDataset

SVG = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24">'
       '<circle cx="12" cy="12" r="10" fill="#e03020"/><rect x="7" y="7" width="10" height="10" fill="#ffffff"/></svg>')


@pytest.fixture()
def icon_folder(tmp_path: Path) -> Path:
    """Four identities, each drawn twice (two 'designers'), one of them as an SVG."""
    root = tmp_path / "icons"
    colours = [(220, 40, 40), (40, 160, 60), (40, 70, 200), (230, 200, 30)]
    for index, colour in enumerate(colours):
        folder = root / f"thing{index}"
        folder.mkdir(parents=True)
        for design in range(2):
            image = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
            draw = ImageDraw.Draw(image)
            if design == 0:
                draw.ellipse((4, 4, 60, 60), fill=colour + (255,))
            else:
                draw.polygon([(32, 2), (62, 62), (2, 62)], fill=colour + (255,))
            draw.rectangle((24, 24, 40, 40), fill=(255, 255, 255, 255))
            image.save(folder / f"design{design}.png")
    (root / "thing0" / "design2.svg").write_text(SVG, encoding="utf-8")
    return root


def _build(folder: Path, out: Path, *, seed: int = 3, workers: int = 1, per_class: int = 3) -> dict:
    identities = sources.load_folder(folder)
    return builder.build(identities, builder.BuildSettings(out=out, seed=seed, per_class=per_class, workers=workers))


def _files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*.jpg"))}


@pytest.mark.slow
def test_same_seed_gives_the_same_bytes_whatever_the_worker_count(icon_folder, tmp_path):
    _build(icon_folder, tmp_path / "a", workers=1)
    _build(icon_folder, tmp_path / "b", workers=2)
    assert (tmp_path / "a" / "labels.txt").read_bytes() == (tmp_path / "b" / "labels.txt").read_bytes()
    first, second = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert len(first) == 12 and first == second


@pytest.mark.slow
def test_another_seed_gives_other_images(icon_folder, tmp_path):
    _build(icon_folder, tmp_path / "a", seed=3)
    _build(icon_folder, tmp_path / "b", seed=4)
    assert _files(tmp_path / "a") != _files(tmp_path / "b")


@pytest.mark.slow
def test_label_file_is_paddleclas_format_and_loads(icon_folder, tmp_path):
    summary = _build(icon_folder, tmp_path / "out")
    lines = (tmp_path / "out" / "labels.txt").read_text(encoding="utf-8").splitlines()
    assert len(lines) == summary["images"] == 4 * 3
    for line in lines:
        assert re.fullmatch(r"images/\d{5}/\d+\.jpg\tfolder:thing\d", line), line
        assert (tmp_path / "out" / line.split("\t")[0]).is_file()
    dataset = ImageDataset.from_label_file(tmp_path / "out" / "labels.txt")
    assert dataset.num_classes == 4 and len(dataset) == 12
    assert dataset.load(0).ndim == 3 and dataset.load(0).shape[2] == 3
    assert summary["identities"] == 4 and summary["artworks_by_source"] == {"folder": 9}


@pytest.mark.slow
def test_views_of_one_identity_differ_but_share_the_label(icon_folder, tmp_path):
    _build(icon_folder, tmp_path / "out")
    lines = [line.split("\t") for line in (tmp_path / "out" / "labels.txt").read_text().splitlines()]
    by_label: dict[str, list[str]] = {}
    for rel, label in lines:
        by_label.setdefault(label, []).append(rel)
    assert all(len(rels) == 3 for rels in by_label.values())
    for rels in by_label.values():
        assert len({rel.split("/")[1] for rel in rels}) == 1  # one folder per class
        pixels = [np.asarray(Image.open(tmp_path / "out" / rel).convert("RGB").resize((64, 64)), np.float32)
                  for rel in rels]
        for i in range(len(pixels)):
            for j in range(i + 1, len(pixels)):
                assert np.abs(pixels[i] - pixels[j]).mean() > 5.0


def test_licences_file_names_every_source_and_its_licence():
    text = (Path(sources.__file__).parent / "LICENSES.md").read_text(encoding="utf-8")
    for spec in sources.SOURCES.values():
        assert f"`{spec.name}`" in text, spec.name
        spdx = spec.licence.split(" ")[0]
        assert spdx in text, (spec.name, spdx)
        assert spec.package.split(" ")[0] in text


def test_missing_npm_source_names_the_install_command(tmp_path):
    with pytest.raises(sources.SourceMissing) as caught:
        sources.load_identities(["twemoji"], tmp_path / "cache")
    assert "npm install --prefix" in str(caught.value) and "@twemoji/svg@15.0.0" in str(caught.value)
    assert caught.value.code == "source_missing"


def test_missing_noto_font_names_the_apt_command(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "NOTO_FONT", tmp_path / "nope.ttf")
    with pytest.raises(sources.SourceMissing, match="apt-get install -y fonts-noto-color-emoji"):
        sources.load_identities(["noto-emoji"], tmp_path / "cache")


def test_cli_reports_a_missing_source_and_fails(tmp_path, capsys):
    code = builder.main(["--out", str(tmp_path / "out"), "--sources", "flag-icons", "--cache", str(tmp_path / "c")])
    assert code == 2
    assert "npm install --prefix" in capsys.readouterr().err


def test_eligible_drops_skin_tones_and_single_design_emoji():
    art = sources.Artwork("twemoji", "svg", "x.svg")
    other = sources.Artwork("openmoji", "svg", "y.svg")
    items = [sources.Identity("emoji:1f44d", "emoji", "thumbs up", (art, other)),
             sources.Identity("emoji:1f44d-1f3fb", "emoji", "thumbs up: light", (art, other)),
             sources.Identity("emoji:1f600", "emoji", "grinning", (art,)),
             sources.Identity("flag:fr", "flag", "France", (art,))]
    assert [i.key for i in builder.eligible(items, min_designs=2)] == ["emoji:1f44d", "flag:fr"]


def test_emoji_keys_merge_designers():
    assert sources.emoji_key("0023-FE0F-20E3") == sources.emoji_key("23-20e3") == "23-20e3"


def test_cylinder_warp_darkens_the_edges_and_keeps_the_size():
    flat = Image.new("RGBA", (80, 40), (200, 200, 200, 255))
    wrapped = np.asarray(cylinder_warp(flat, arc=3.0, phase=0.0, shade=0.6, highlight=0.0), np.float32)
    assert wrapped.shape == (40, 80, 4)
    assert wrapped[:, 2, 0].mean() < wrapped[:, 40, 0].mean() - 40
