"""Where identities come from: npm/Debian packages in a local cache, or a folder of images.

Each source turns package files into ``Identity`` records (a key, a title and the artworks
that show it). Emoji sources share keys (normalised code points), so the same emoji drawn
by different designers merges into one identity. Licences are listed in ``LICENSES.md``;
a source whose files are missing raises ``SourceMissing`` with the command that installs it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_CACHE = Path("var/data-sources")
NOTO_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
NOTO_SIZE = 109  # the only strike size of the CBDT bitmap font
ART_SIZE = 256   # artworks are rasterised to fit this square
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".svg")


class SourceMissing(RuntimeError):
    """A source's files are not installed; ``install`` is the command that fixes it."""

    code = "source_missing"

    def __init__(self, source: str, install: str, detail: str = ""):
        self.source, self.install = source, install
        message = f"source {source!r} is not installed{': ' + detail if detail else ''}. Install it with:\n  {install}"
        super().__init__(message)


@dataclass(frozen=True)
class Artwork:
    """One drawing of an identity: how to rasterise it (``kind``) and from what (``ref``)."""

    source: str          # which source drew it (twemoji, openmoji, ...)
    kind: str            # svg | svg-mono | noto | image
    ref: str             # file path, or the emoji text for ``noto``
    fg: str | None = None      # svg-mono: fill colour "#rrggbb"
    plate: str | None = None   # svg-mono: colour of a rounded plate behind the logo


@dataclass(frozen=True)
class Identity:
    """One training class: ``key`` is unique across sources, ``artworks`` are its drawings."""

    key: str
    family: str          # emoji | brand | flag | folder
    title: str
    artworks: tuple[Artwork, ...]
    colour: str | None = None   # a colour that belongs to the identity (brand hex), if any

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(sorted({a.source for a in self.artworks}))


@dataclass(frozen=True)
class SourceSpec:
    name: str
    family: str
    licence: str
    package: str                       # what to install
    install: str                       # the command, as printed in errors
    load: Callable[[Path], list[Identity]] = field(repr=False, compare=False)


NPM_PACKAGES = {
    "twemoji": "@twemoji/svg@15.0.0",
    "openmoji": "openmoji@17.0.0",
    "fluent-emoji": "fluentui-emoji@1.3.0",
    "simple-icons": "simple-icons@16.37.0",
    "flag-icons": "flag-icons@7.5.0",
}


def npm_install_command(cache: Path, packages: Iterable[str] | None = None) -> str:
    names = " ".join(packages or NPM_PACKAGES.values())
    return f"npm install --prefix {cache / 'npm'} --no-audit --no-fund --ignore-scripts {names}"


def _npm_dir(cache: Path, source: str, package_dir: str) -> Path:
    path = cache / "npm" / "node_modules" / package_dir
    if not (path / "package.json").is_file():
        raise SourceMissing(source, npm_install_command(cache, [NPM_PACKAGES[source]]), f"{path} not found")
    return path


# --- emoji --------------------------------------------------------------------------------


def emoji_key(codepoints: str | Sequence[int]) -> str:
    """Normalised key of an emoji: lower-case hex code points joined by '-', FE0F dropped."""
    if isinstance(codepoints, str):
        parts = [p for p in re.split(r"[-_ ]", codepoints.lower()) if p]
        values = [int(p, 16) for p in parts]
    else:
        values = list(codepoints)
    return "-".join(f"{v:x}" for v in values if v != 0xFE0F)


def _emoji_text(key: str) -> str:
    return "".join(chr(int(p, 16)) for p in key.split("-"))


def _openmoji_meta(cache: Path) -> dict[str, dict[str, Any]]:
    """OpenMoji's emoji table (hexcode -> row): titles for every emoji source."""
    try:
        root = _npm_dir(cache, "openmoji", "openmoji")
    except SourceMissing:
        return {}
    rows = json.loads((root / "data" / "openmoji.json").read_text(encoding="utf-8"))
    return {emoji_key(row["hexcode"]): row for row in rows}


def _titled(key: str, meta: dict[str, dict[str, Any]]) -> str:
    return str(meta.get(key, {}).get("annotation") or f"emoji {key}")


def load_twemoji(cache: Path) -> list[Identity]:
    root = _npm_dir(cache, "twemoji", "@twemoji/svg")
    meta = _openmoji_meta(cache)
    out = []
    for path in sorted(root.glob("*.svg")):
        key = emoji_key(path.stem)
        out.append(Identity(f"emoji:{key}", "emoji", _titled(key, meta),
                            (Artwork("twemoji", "svg", str(path)),)))
    return out


def load_openmoji(cache: Path) -> list[Identity]:
    root = _npm_dir(cache, "openmoji", "openmoji")
    meta = _openmoji_meta(cache)
    out = []
    for path in sorted((root / "color" / "svg").glob("*.svg")):
        key = emoji_key(path.stem)
        if key not in meta or not meta[key].get("emoji"):
            continue  # OpenMoji's own extras (private-use code points) have no other designer
        out.append(Identity(f"emoji:{key}", "emoji", _titled(key, meta),
                            (Artwork("openmoji", "svg", str(path)),)))
    return out


def _noto_has_glyph(font: Any, text: str) -> bool:
    from PIL import Image, ImageDraw

    canvas = Image.new("RGBA", (NOTO_SIZE * 3, NOTO_SIZE + 40))
    ImageDraw.Draw(canvas).text((0, 0), text, font=font, embedded_color=True)
    box = canvas.getbbox()
    # A sequence the font cannot ligate falls apart into several glyphs (wider than one).
    return box is not None and (box[2] - box[0]) <= NOTO_SIZE * 1.4


def load_noto(cache: Path) -> list[Identity]:
    """Noto Color Emoji glyphs for every emoji the other sources know (the font has no names)."""
    if not NOTO_FONT.is_file():
        raise SourceMissing("noto-emoji", "apt-get install -y fonts-noto-color-emoji  (as root)",
                            f"{NOTO_FONT} not found")
    from PIL import ImageFont

    font = ImageFont.truetype(str(NOTO_FONT), NOTO_SIZE)
    meta = _openmoji_meta(cache)
    keys = set(meta)
    try:
        keys |= {emoji_key(p.stem) for p in _npm_dir(cache, "twemoji", "@twemoji/svg").glob("*.svg")}
    except SourceMissing:
        pass
    out = []
    for key in sorted(keys):
        text = _emoji_text(key)
        if any(0xE000 <= ord(ch) <= 0xF8FF for ch in text) or not _noto_has_glyph(font, text):
            continue
        out.append(Identity(f"emoji:{key}", "emoji", _titled(key, meta), (Artwork("noto-emoji", "noto", text),)))
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def load_fluent(cache: Path) -> list[Identity]:
    """Fluent emoji are named, not numbered: join them to code points through OpenMoji's names."""
    root = _npm_dir(cache, "fluent-emoji", "fluentui-emoji")
    meta = _openmoji_meta(cache)
    if not meta:
        raise SourceMissing("fluent-emoji", npm_install_command(cache, [NPM_PACKAGES["openmoji"]]),
                            "fluent emoji need OpenMoji's name table to find their code points")
    by_name = {}
    for key, row in meta.items():
        by_name.setdefault(_slug(str(row.get("annotation", ""))), key)
    out = []
    for style in ("flat", "modern"):  # "high-contrast" is a monochrome outline: not a colour design
        for path in sorted((root / "icons" / style).glob("*.svg")):
            key = by_name.get(path.stem)
            if key is None:
                continue
            out.append(Identity(f"emoji:{key}", "emoji", _titled(key, meta),
                                (Artwork(f"fluent-{style}", "svg", str(path)),)))
    return out


# --- brands and flags -------------------------------------------------------------------

# Per-icon licences Simple Icons records; icons without one fall under the package's CC0.
SIMPLE_ICONS_ALLOWED = {None, "CC0-1.0", "MIT", "Apache-2.0", "CC-BY-4.0", "BSD-2-Clause", "BSD-3-Clause"}


def _luminance(hex_colour: str) -> float:
    r, g, b = (int(hex_colour[i:i + 2], 16) / 255 for i in (0, 2, 4))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def load_simple_icons(cache: Path) -> list[Identity]:
    """Brand logos: the logo in its brand colour, white on a brand-coloured plate, dark on light."""
    root = _npm_dir(cache, "simple-icons", "simple-icons")
    rows = json.loads((root / "data" / "simple-icons.json").read_text(encoding="utf-8"))
    out = []
    for row in rows:
        licence = (row.get("license") or {}).get("type")
        path = root / "icons" / f"{row.get('slug', '')}.svg"
        if licence not in SIMPLE_ICONS_ALLOWED or not path.is_file():
            continue
        hex_colour = str(row["hex"]).upper()
        brand = f"#{hex_colour}"
        light = _luminance(hex_colour) > 0.7
        contrast = "#111111" if light else "#FFFFFF"
        artworks = (
            Artwork("simple-icons", "svg-mono", str(path), fg=brand, plate="#1A1A1A" if light else None),
            Artwork("simple-icons", "svg-mono", str(path), fg=contrast, plate=brand),
            Artwork("simple-icons", "svg-mono", str(path), fg=brand, plate=contrast if light else "#F4F4F4"),
        )
        out.append(Identity(f"brand:{row['slug']}", "brand", str(row["title"]), artworks, colour=brand))
    return out


def load_flag_icons(cache: Path) -> list[Identity]:
    root = _npm_dir(cache, "flag-icons", "flag-icons")
    rows = json.loads((root / "country.json").read_text(encoding="utf-8"))
    out = []
    for row in rows:
        code = str(row["code"])
        views = tuple(Artwork("flag-icons", "svg", str(root / row[name])) for name in ("flag_4x3", "flag_1x1")
                      if (root / row[name]).is_file())
        if views:
            out.append(Identity(f"flag:{code}", "flag", str(row.get("name", code)), views))
    return out


def load_folder(root: Path) -> list[Identity]:
    """Your own artwork: ``ROOT/<identity>/<any name>.(png|jpg|webp|svg)``, one folder per identity."""
    if not root.is_dir():
        raise SourceMissing(f"folder:{root}", f"mkdir -p {root}/<identity> and put images in it", "no such folder")
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        artworks = tuple(Artwork("folder", "svg" if p.suffix.lower() == ".svg" else "image", str(p)) for p in files)
        if artworks:
            out.append(Identity(f"folder:{folder.name}", "folder", folder.name, artworks))
    return out


SOURCES: dict[str, SourceSpec] = {
    spec.name: spec for spec in (
        SourceSpec("twemoji", "emoji", "CC-BY-4.0 (graphics, Twitter/X Corp and jdecked contributors); "
                   "MIT (npm packaging)", NPM_PACKAGES["twemoji"], "", load_twemoji),
        SourceSpec("openmoji", "emoji", "CC-BY-SA-4.0", NPM_PACKAGES["openmoji"], "", load_openmoji),
        SourceSpec("noto-emoji", "emoji", "OFL-1.1", "fonts-noto-color-emoji (Debian)",
                   "apt-get install -y fonts-noto-color-emoji", load_noto),
        SourceSpec("fluent-emoji", "emoji", "MIT (Microsoft Fluent Emoji; npm repackaging MIT)",
                   NPM_PACKAGES["fluent-emoji"], "", load_fluent),
        SourceSpec("simple-icons", "brand", "CC0-1.0 (package; icons with a stricter per-icon licence "
                   "are skipped)", NPM_PACKAGES["simple-icons"], "", load_simple_icons),
        SourceSpec("flag-icons", "flag", "MIT", NPM_PACKAGES["flag-icons"], "", load_flag_icons),
    )
}
DEFAULT_SOURCES = tuple(SOURCES)


def install_sources(cache: Path, names: Sequence[str]) -> None:
    """Install the named sources into ``cache`` with npm / apt (apt only as root)."""
    npm = [NPM_PACKAGES[n] for n in names if n in NPM_PACKAGES]
    if npm:
        if shutil.which("npm") is None:
            raise SourceMissing(",".join(names), "apt-get install -y npm  (then re-run with --install)",
                                "npm is not on PATH")
        (cache / "npm").mkdir(parents=True, exist_ok=True)
        subprocess.run(npm_install_command(cache, npm).split(), check=True)
    if "noto-emoji" in names and not NOTO_FONT.is_file():
        if os.geteuid() != 0:
            raise SourceMissing("noto-emoji", "sudo apt-get install -y fonts-noto-color-emoji",
                                "installing a Debian package needs root")
        subprocess.run(["apt-get", "install", "-y", "fonts-noto-color-emoji"], check=True)


def load_identities(names: Sequence[str], cache: Path = DEFAULT_CACHE, *,
                    folders: Sequence[Path] = ()) -> list[Identity]:
    """Identities of the named sources (plus ``folders``), same-key identities merged, sorted by key."""
    merged: dict[str, Identity] = {}
    loaded: list[Identity] = []
    for name in names:
        if name not in SOURCES:
            raise ValueError(f"unknown source {name!r}; known: {sorted(SOURCES)}")
        loaded.extend(SOURCES[name].load(Path(cache)))
    for folder in folders:
        loaded.extend(load_folder(Path(folder)))
    for identity in loaded:
        have = merged.get(identity.key)
        if have is None:
            merged[identity.key] = identity
        else:
            merged[identity.key] = Identity(have.key, have.family, have.title,
                                            have.artworks + identity.artworks, have.colour or identity.colour)
    return [merged[key] for key in sorted(merged)]


__all__ = ["ART_SIZE", "Artwork", "DEFAULT_CACHE", "DEFAULT_SOURCES", "Identity", "NOTO_FONT", "SOURCES",
           "SourceMissing", "SourceSpec", "emoji_key", "install_sources", "load_folder", "load_identities",
           "npm_install_command"]
