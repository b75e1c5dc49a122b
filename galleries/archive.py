"""Reading an import archive safely: a zip of images plus a PaddleClas label file or a product CSV.

Nothing is extracted to disk: members are read by name into memory, one at a time, so path
traversal cannot write anywhere. Zip bombs, symlinks, oversized members and too many members
are refused per archive or per row with a reason.
"""
from __future__ import annotations

import csv
import io
import json
import lzma
import stat
import unicodedata
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from shitu_platform.errors import PlatformError

LABEL_FILE_NAMES = ("labels.txt", "label.txt", "gallery_label.txt")
CSV_FILE_NAMES = ("products.csv", "import.csv")
MAX_MEMBERS = 100_000
MAX_COMPRESSION_RATIO = 200  # images barely compress; far more than this is a bomb
MAX_LABEL_LENGTH = 200
MAX_REPORTED_PATH = 300  # row errors quote the path, cut so a hostile manifest cannot bloat every job read
# Everything a damaged or exotic zip member can raise while being read: one row (or the manifest) fails with a reason.
_MEMBER_READ_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, RuntimeError, EOFError, zlib.error,
                       lzma.LZMAError, ValueError, NotImplementedError, IndexError, KeyError)


class InvalidArchive(PlatformError):
    code = "invalid_archive"
    http_status = 400


class RowError(Exception):
    """One row cannot be imported; the others can."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ImportRow:
    number: int  # 1-based line in the manifest
    image_path: str
    label: str
    display_name: str = ""
    sku: str = ""
    attributes: dict[str, str] = field(default_factory=dict)
    bbox: list[float] | None = None


class ImportArchive:
    def __init__(self, data: bytes, *, max_member_bytes: int, max_total_bytes: int) -> None:
        try:
            self._zip = zipfile.ZipFile(io.BytesIO(data))
            members = self._zip.infolist()
            if len(members) > MAX_MEMBERS:
                raise InvalidArchive(f"the zip holds {len(members)} entries, limit {MAX_MEMBERS}")
            total = sum(m.file_size for m in members)
            if total > max_total_bytes:
                raise InvalidArchive(f"the zip unpacks to {total} bytes, limit {max_total_bytes}")
            if any(not m.filename for m in members):  # e.g. a name starting with NUL, cut to nothing by zipfile
                raise InvalidArchive("the zip has a member without a usable name")
            self._members = {m.filename: m for m in members if not m.is_dir()}
        except _MEMBER_READ_ERRORS as error:
            raise InvalidArchive(f"not a readable zip file: {error}") from error
        self.max_member_bytes = max_member_bytes

    def rows(self) -> list[ImportRow]:
        """The manifest's rows, in order; a manifest-level problem raises InvalidArchive."""
        manifest_name, kind = self._find_manifest()
        text = self._read_text(manifest_name)
        base = str(PurePosixPath(manifest_name).parent)
        rows = parse_label_file(text) if kind == "labels" else parse_product_csv(text)
        if not rows:
            raise InvalidArchive(f"{manifest_name} lists no images")
        if base not in ("", "."):
            rows = [_with_path(row, f"{base}/{row.image_path}") for row in rows]
        return rows

    def read_image(self, path: str) -> bytes:
        """The bytes of one listed image, or RowError saying why not."""
        normalised = str(PurePosixPath(path))
        if normalised.startswith("/") or ".." in PurePosixPath(normalised).parts:
            raise RowError("unsafe_path", f"{path}: absolute or '..' paths are not allowed")
        member = self._members.get(normalised)
        if member is None:
            raise RowError("missing_file", f"{path} is listed but not in the zip")
        if stat.S_ISLNK(member.external_attr >> 16):
            raise RowError("symlink", f"{path} is a symbolic link")
        if member.file_size > self.max_member_bytes:
            raise RowError("file_too_large", f"{path} is {member.file_size} bytes, limit {self.max_member_bytes}")
        if member.compress_size and member.file_size / member.compress_size > MAX_COMPRESSION_RATIO:
            raise RowError("zip_bomb", f"{path} expands {member.file_size // member.compress_size}x")
        try:
            with self._zip.open(member) as handle:
                data = handle.read(self.max_member_bytes + 1)
        except _MEMBER_READ_ERRORS as error:
            raise RowError("corrupt_zip_member", f"{path[:MAX_REPORTED_PATH]}: {type(error).__name__}: {error}") from error
        if len(data) > self.max_member_bytes:
            raise RowError("file_too_large", f"{path} is larger than {self.max_member_bytes} bytes")
        return data

    def _find_manifest(self) -> tuple[str, str]:
        by_depth = sorted(self._members, key=lambda name: (name.count("/"), name))
        for name in by_depth:
            leaf = PurePosixPath(name).name.lower()
            if leaf in LABEL_FILE_NAMES:
                return name, "labels"
            if leaf in CSV_FILE_NAMES:
                return name, "csv"
        raise InvalidArchive(f"the zip needs a label file ({', '.join(LABEL_FILE_NAMES)}) or a CSV ({', '.join(CSV_FILE_NAMES)})")

    def _read_text(self, name: str) -> str:
        member = self._members[name]
        if member.file_size > 50 * 1024 * 1024:
            raise InvalidArchive(f"{name} is larger than 50 MB")
        try:
            raw = self._zip.read(member)
        except _MEMBER_READ_ERRORS as error:
            raise InvalidArchive(f"{name} cannot be read: {type(error).__name__}: {error}") from error
        try:
            return raw.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            raise InvalidArchive(f"{name} is not UTF-8: {error}") from error


def parse_label_file(text: str) -> list[ImportRow]:
    """PaddleClas format: `relative/path<TAB>label` per line. The whole label is kept, spaces included."""
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        path, separator, label = line.partition("\t")
        if not separator:
            path, _, label = line.partition(" ")  # PaddleClas also accepts one space; labels then keep their spaces
        rows.append(ImportRow(number=number, image_path=path.strip(), label=label.strip()))
    return rows


def parse_product_csv(text: str) -> list[ImportRow]:
    """Columns: image, label (required); display_name, sku, attributes (JSON object or k=v;k=v), bbox (x0,y0,x1,y1)."""
    try:
        return _product_csv_rows(text)
    except csv.Error as error:
        raise InvalidArchive(f"the CSV cannot be read: {error}") from error


def _product_csv_rows(text: str) -> list[ImportRow]:
    reader = csv.DictReader(io.StringIO(text))
    missing = {"image", "label"} - set(reader.fieldnames or [])
    if missing:
        raise InvalidArchive(f"the CSV lacks column(s) {sorted(missing)}; it needs image and label")
    rows = []
    for number, record in enumerate(reader, start=2):
        rows.append(
            ImportRow(
                number=number, image_path=(record.get("image") or "").strip(), label=(record.get("label") or "").strip(),
                display_name=(record.get("display_name") or "").strip(), sku=(record.get("sku") or "").strip(),
                attributes=_attributes(record.get("attributes") or ""), bbox=_bbox(record.get("bbox") or ""),
            )
        )
    return rows


def check_row(row: ImportRow) -> None:
    if not row.image_path:
        raise RowError("missing_image", f"line {row.number}: no image path")
    if not row.label:
        raise RowError("missing_label", f"line {row.number}: no label")
    if len(row.label) > MAX_LABEL_LENGTH:
        raise RowError("label_too_long", f"line {row.number}: label longer than {MAX_LABEL_LENGTH} characters")
    texts = [row.image_path, row.label, row.display_name, row.sku, *row.attributes, *row.attributes.values()]
    if any(has_control_characters(text) for text in texts):
        raise RowError("invalid_characters", f"line {row.number}: control characters (e.g. NUL) in a path, label or attribute")


def has_control_characters(text: str) -> bool:
    """NUL and other C0/C1 control characters (tab excepted) cannot be stored or shown sensibly."""
    return any(unicodedata.category(char) == "Cc" and char != "\t" for char in text)


def _with_path(row: ImportRow, path: str) -> ImportRow:
    return ImportRow(row.number, path, row.label, row.display_name, row.sku, row.attributes, row.bbox)


def _attributes(text: str) -> dict[str, str]:
    text = text.strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except RecursionError as error:
            raise InvalidArchive("an attributes cell is nested too deeply") from error
        except ValueError:
            return {"_raw": text[:1000]}
        return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {"_raw": text}
    pairs = (item.split("=", 1) for item in text.split(";") if "=" in item)
    return {key.strip(): value.strip() for key, value in pairs}


def _bbox(text: str) -> list[float] | None:
    parts = [p for p in text.replace(";", ",").split(",") if p.strip()]
    if len(parts) != 4:
        return None
    try:
        return [float(p) for p in parts]
    except ValueError:
        return None
