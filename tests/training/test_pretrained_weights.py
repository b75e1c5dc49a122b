"""The restricted legacy ``torch.save`` reader and the EfficientNet-Lite0 ImageNet import.

The legacy files here are written byte by byte with Python's own ``pickle`` the way
``torch.save(..., _use_new_zipfile_serialization=False)`` writes them; torch itself is not
installed, so the globals such a file names (``torch.FloatStorage``,
``torch._utils._rebuild_tensor_v2``) come from fake modules put into ``sys.modules`` only while
the bytes are written.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import sys
import types
from collections import OrderedDict
from pathlib import Path

import numpy as np
import paddle
import pytest

from recognition.engine.nets.efficientnet_lite import EfficientNetLite, LiteBlock, lite0_blocks
from training.engine.pretrained import (SOURCES, blocks_from_state, load_into, pretrained_backbone,
                                        read_checkpoint)
from training.engine.torch_weights import WeightsFileError, read_legacy_state_dict

MAGIC = 0x1950A86A20F9469CFC6C
PROTOCOL = 1001
SYS_INFO = {"protocol_version": PROTOCOL, "little_endian": True,
            "type_sizes": {"short": 2, "int": 4, "long": 4}}


# --------------------------------------------------------------------------- legacy writer


class _Storage:
    """One flat storage: its key, its torch storage class and its elements."""

    def __init__(self, key: str, kind: type, array: np.ndarray):
        self.key, self.kind, self.array = key, kind, np.ascontiguousarray(array)


class _Tensor:
    """Pickles as ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, {})``."""

    def __init__(self, fake_torch, storage: _Storage, offset: int, size: tuple, stride: tuple):
        self.rebuild = fake_torch._utils._rebuild_tensor_v2
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def __reduce__(self):
        return (self.rebuild, (self.storage, self.offset, self.size, self.stride, False, OrderedDict()))


class _Reduce:
    """Any object whose unpickling calls ``func(*args)``."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


class _LegacyPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            return ("storage", obj.kind, obj.key, "cpu", int(obj.array.size))
        return None


def _rebuild_tensor_v2_never_called(*args):  # only its name goes into the pickle
    raise AssertionError("the fake torch must never be called by the reader")


@pytest.fixture
def fake_torch(monkeypatch):
    """``torch`` with storage classes and ``torch._utils._rebuild_tensor_v2``, for pickling."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")
    for name in ("FloatStorage", "LongStorage", "DoubleStorage"):
        cls = type(name, (), {"__module__": "torch"})
        setattr(torch, name, cls)
    rebuild = _rebuild_tensor_v2_never_called
    utils._rebuild_tensor_v2 = types.FunctionType(rebuild.__code__, rebuild.__globals__, "_rebuild_tensor_v2")
    utils._rebuild_tensor_v2.__module__ = "torch._utils"
    utils._rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    torch._utils = utils
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return torch


def _legacy_bytes(state, storages: list[_Storage], *, sys_info=SYS_INFO) -> tuple[bytes, dict[str, int]]:
    """The legacy file, and the byte offset where each storage's raw elements start."""
    out = io.BytesIO()
    pickle.dump(MAGIC, out, protocol=2)
    pickle.dump(PROTOCOL, out, protocol=2)
    pickle.dump(sys_info, out, protocol=2)
    _LegacyPickler(out, protocol=2).dump(state)
    pickle.dump([s.key for s in storages], out, protocol=2)
    body_at = {}
    for storage in storages:
        out.write(int(storage.array.size).to_bytes(8, "little", signed=True))
        body_at[storage.key] = out.tell()
        out.write(storage.array.astype(storage.array.dtype.newbyteorder("<")).tobytes())
    return out.getvalue(), body_at


def _sample(fake_torch):
    """A state dict exercising contiguous, transposed, offset/shared and 0-d int64 tensors."""
    conv = np.arange(54, dtype=np.float32).reshape(2, 3, 3, 3) / 7 - 3
    matrix = np.random.default_rng(1).standard_normal((4, 6)).astype(np.float32)
    shared = (np.arange(20, dtype=np.float32) * 0.25 - 1.5)
    s_conv = _Storage("0", fake_torch.FloatStorage, conv.ravel())
    s_matrix = _Storage("1", fake_torch.FloatStorage, matrix.ravel())
    s_shared = _Storage("7", fake_torch.FloatStorage, shared)
    s_count = _Storage("3", fake_torch.LongStorage, np.array([123456789012], dtype=np.int64))
    t = lambda *a: _Tensor(fake_torch, *a)  # noqa: E731
    state = OrderedDict([
        ("conv.weight", t(s_conv, 0, (2, 3, 3, 3), (27, 9, 3, 1))),
        ("fc.weight_t", t(s_matrix, 0, (6, 4), (1, 6))),          # matrix.T, a transposed view
        ("shared.block", t(s_shared, 5, (3, 4), (4, 1))),         # offset 5 into a shared storage
        ("shared.strided", t(s_shared, 2, (3,), (5,))),           # elements 2, 7, 12 of it
        ("shared.cols", t(s_shared, 1, (2, 3), (1, 6))),          # offset + non-contiguous
        ("bn.num_batches_tracked", t(s_count, 0, (), ())),
    ])
    expected = {
        "conv.weight": conv,
        "fc.weight_t": matrix.T,
        "shared.block": shared[5:17].reshape(3, 4),
        "shared.strided": shared[[2, 7, 12]],
        "shared.cols": np.array([[shared[1], shared[7], shared[13]], [shared[2], shared[8], shared[14]]]),
        "bn.num_batches_tracked": np.array(123456789012, dtype=np.int64),
    }
    return state, [s_conv, s_matrix, s_shared, s_count], expected


# --------------------------------------------------------------------------- 1. reading


def test_legacy_file_reads_exact_arrays(tmp_path, fake_torch):
    state, storages, expected = _sample(fake_torch)
    raw, _ = _legacy_bytes(state, storages)
    path = tmp_path / "sample.pth"
    path.write_bytes(raw)

    got = read_legacy_state_dict(path)

    assert list(got) == list(expected)
    for name, want in expected.items():
        assert got[name].dtype == want.dtype, name
        assert got[name].shape == want.shape, name
        np.testing.assert_array_equal(got[name], want, err_msg=name)
    assert got["bn.num_batches_tracked"].ndim == 0
    assert int(got["bn.num_batches_tracked"]) == 123456789012
    assert got["fc.weight_t"].flags["C_CONTIGUOUS"]
    # the pinned-hash path accepts the right hash
    again = read_legacy_state_dict(path, sha256=hashlib.sha256(raw).hexdigest())
    np.testing.assert_array_equal(again["shared.cols"], expected["shared.cols"])


# --------------------------------------------------------------------------- 2. foreign globals


@pytest.fixture
def marker(monkeypatch):
    """A fake module whose ``boom`` records that it ran."""
    module = types.ModuleType("shitu_test_marker")
    module.calls = []

    def boom(*args):
        module.calls.append(args)
        return 0

    boom.__module__ = module.__name__
    boom.__qualname__ = "boom"
    module.boom = boom
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return module


@pytest.mark.parametrize("where", ["state", "tensor_arg", "header"])
def test_foreign_global_is_refused_and_never_called(tmp_path, fake_torch, marker, where):
    state, storages, _ = _sample(fake_torch)
    payload = _Reduce(marker.boom, "ran")
    sys_info = SYS_INFO
    if where == "state":
        state["evil"] = payload
    elif where == "tensor_arg":   # hidden inside an otherwise allowed rebuild call
        state["conv.weight"] = _Reduce(fake_torch._utils._rebuild_tensor_v2, storages[0], 0, payload, (1,), False,
                                       OrderedDict())
    else:
        sys_info = {**SYS_INFO, "evil": payload}
    raw, _ = _legacy_bytes(state, storages, sys_info=sys_info)
    path = tmp_path / "evil.pth"
    path.write_bytes(raw)

    with pytest.raises(WeightsFileError, match="shitu_test_marker.boom") as info:
        read_legacy_state_dict(path)
    assert str(path) in str(info.value)
    assert marker.calls == []

    # the payload is live: an unrestricted unpickler would have called it
    pickle.loads(pickle.dumps(payload))
    assert marker.calls == [("ran",)]


def test_os_system_is_refused(tmp_path, fake_torch):
    flag = tmp_path / "pwned"
    state, storages, _ = _sample(fake_torch)
    state["evil"] = _Reduce(os.system, f"touch {flag}")
    raw, _ = _legacy_bytes(state, storages)
    path = tmp_path / "evil.pth"
    path.write_bytes(raw)
    assert b"system" in raw

    with pytest.raises(WeightsFileError, match=r"system is not allowed"):
        read_legacy_state_dict(path)
    assert not flag.exists()


def test_builtins_eval_is_refused(tmp_path, fake_torch):
    state, storages, _ = _sample(fake_torch)
    state["evil"] = _Reduce(eval, "__import__('sys').modules.setdefault('shitu_eval_ran', 1)")
    raw, _ = _legacy_bytes(state, storages)
    path = tmp_path / "evil.pth"
    path.write_bytes(raw)

    with pytest.raises(WeightsFileError, match=r"(__builtin__|builtins)\.eval is not allowed"):
        read_legacy_state_dict(path)
    assert "shitu_eval_ran" not in sys.modules


# --------------------------------------------------------------------------- 3. hash, truncation


def test_sha256_mismatch_is_refused(tmp_path, fake_torch):
    state, storages, _ = _sample(fake_torch)
    raw, _ = _legacy_bytes(state, storages)
    path = tmp_path / "pinned.pth"
    path.write_bytes(raw)
    wrong = hashlib.sha256(raw + b"x").hexdigest()

    with pytest.raises(WeightsFileError, match="sha256") as info:
        read_legacy_state_dict(path, sha256=wrong)
    assert str(path) in str(info.value)
    assert wrong in str(info.value)


def test_truncated_file_is_refused(tmp_path, fake_torch):
    state, storages, _ = _sample(fake_torch)
    raw, body_at = _legacy_bytes(state, storages)
    # cut in the middle of storage "1" (24 float32 = 96 bytes)
    cut = body_at["1"] + 50
    path = tmp_path / "cut.pth"
    path.write_bytes(raw[:cut])

    with pytest.raises(WeightsFileError, match=r"truncated inside storage '1'") as info:
        read_legacy_state_dict(path)
    assert str(path) in str(info.value)

    # cut inside the state-dict pickle itself: still a WeightsFileError, not a raw pickle error
    path.write_bytes(raw[:body_at["0"] // 2])
    with pytest.raises(WeightsFileError):
        read_legacy_state_dict(path)


# --------------------------------------------------------------------------- 4. real checkpoint

# EfficientNet-B0's stage strides; a new stage starts where the output width changes.
STAGE_STRIDES = (1, 2, 2, 2, 1, 2, 1)
LITE0_STRIDES = [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1]


@pytest.fixture(scope="module")
def state():
    return read_checkpoint("efficientnet-lite0")


@pytest.fixture(scope="module")
def pretrained():
    network = pretrained_backbone()
    network.eval()
    return network


def test_checkpoint_entries_and_block_table(state):
    assert len(state) == 296
    assert Path(SOURCES["efficientnet-lite0"].path()).is_file()
    blocks = blocks_from_state(state)
    assert len(blocks) == 16
    assert [b.stride for b in blocks] == LITE0_STRIDES

    # the stage rule, worked out here from the checkpoint's own output widths
    strides, stage, last = [], -1, None
    for i in range(16):
        out = state[f"_blocks.{i}._project_conv.weight"].shape[0]
        if out != last:
            stage += 1
            strides.append(STAGE_STRIDES[stage])
        else:
            strides.append(1)
        last = out
    assert stage == len(STAGE_STRIDES) - 1
    assert strides == LITE0_STRIDES

    assert blocks == lite0_blocks()
    assert blocks[0] == LiteBlock(32, 16, 3, 1, 1)
    assert blocks[-1] == LiteBlock(192, 320, 3, 1, 6)
    assert "_blocks.0._expand_conv.weight" not in state


# --------------------------------------------------------------------------- 5. name/shape checks

# 296 entries - 49 BatchNorm num_batches_tracked - _fc.weight and _fc.bias
COPIED = 245


def test_load_into_copies_every_backbone_tensor(state):
    network = EfficientNetLite(lite0_blocks())
    assert load_into(network, state) == COPIED
    own = network.state_dict()
    assert len([k for k in own if not k.startswith("adapter.")]) == COPIED
    np.testing.assert_array_equal(own["stem.conv.weight"].numpy(), state["_conv_stem.weight"])
    np.testing.assert_array_equal(own["blocks.5.depthwise.bn._variance"].numpy(),
                                  state["_blocks.5._bn1.running_var"])
    np.testing.assert_array_equal(own["head.bn._mean"].numpy(), state["_bn1.running_mean"])


def test_load_into_refuses_wrong_shape(state):
    name = "_blocks.7._project_conv.weight"
    bad = dict(state)
    bad[name] = state[name].reshape(state[name].shape[1], state[name].shape[0], 1, 1)
    with pytest.raises(WeightsFileError, match=rf"'{name}' has shape \(480, 80, 1, 1\)"):
        load_into(EfficientNetLite(lite0_blocks()), bad, where="ckpt.pth")


def test_load_into_refuses_unknown_name(state):
    bad = {**state, "_blocks.3._se_reduce.weight": np.zeros((6, 144, 1, 1), np.float32)}
    with pytest.raises(WeightsFileError, match=r"'_blocks\.3\._se_reduce\.weight' has no place"):
        load_into(EfficientNetLite(lite0_blocks()), bad)


def test_load_into_refuses_missing_name(state):
    bad = {k: v for k, v in state.items() if k != "_blocks.15._bn2.running_var"}
    with pytest.raises(WeightsFileError, match=r"blocks\.15\.project\.bn\._variance"):
        load_into(EfficientNetLite(lite0_blocks()), bad)


# --------------------------------------------------------------------------- 6. golden output

# Computed once with this checkout (CPU, paddle eval mode) for the input below.
GOLDEN_TOP5 = [539, 911, 885, 735, 824]
GOLDEN_POOLED_FIRST5 = [0.1306, 0.0, 0.2199, 0.0, 0.0]
GOLDEN_TOP5_LOGITS = [6.4883, 6.1211, 5.5061, 4.7666, 4.3749]


def test_pretrained_golden_imagenet_logits(pretrained, state):
    x = (np.random.default_rng(0).standard_normal((1, 3, 224, 224)) * 0.5).astype(np.float32)
    with paddle.no_grad():
        features = pretrained(paddle.to_tensor(x)).numpy()
    assert features.shape == (1, 1280, 7, 7)
    pooled = features.mean(axis=(2, 3))[0]
    logits = pooled @ state["_fc.weight"].T + state["_fc.bias"]
    assert logits.shape == (1000,)
    top5 = np.argsort(-logits)[:5]
    assert top5.tolist() == GOLDEN_TOP5
    assert np.allclose(pooled[:5], GOLDEN_POOLED_FIRST5, atol=1e-3)
    assert np.allclose(logits[top5], GOLDEN_TOP5_LOGITS, atol=1e-3)
