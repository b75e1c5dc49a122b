"""Export -> load through the official-archive code path -> same numbers as dygraph; installs."""

from __future__ import annotations

import functools
import http.server
import io
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import textwrap
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import paddle
import pytest

from recognition.engine.errors import ModelInstallError, ModelNotFound
from recognition.engine.inference import PaddleDetector, PaddleExtractor
from recognition.engine.export import export_inference_model
from recognition.engine.install import install_archive
from recognition.engine.manifest import installed_models, read_manifest
from recognition.engine.model_files import find_model_files, parse_infer_cfg, program_input_shapes
from recognition.engine.nets import PicoDet, build_recognition_model
from recognition.engine.preprocess import DetectionPreprocess, RecognitionPreprocess, resize
from recognition.engine.types import Box

REPO_ROOT = Path(__file__).resolve().parents[2]
REC_SIZE = 64            # small inputs keep the suite fast; the nets are size-agnostic
DET_SIZE = (128, 128)


def _randomise(layer, seed: int) -> None:
    """Non-trivial BN statistics and head weights, so export and NMS see real variety."""
    rng = np.random.default_rng(seed)
    for sub in layer.sublayers():
        if isinstance(sub, (paddle.nn.BatchNorm1D, paddle.nn.BatchNorm2D)):
            size = sub._mean.shape[0]
            sub._mean.set_value(rng.normal(0, 0.1, size).astype("float32"))
            sub._variance.set_value(rng.uniform(0.5, 1.5, size).astype("float32"))
            sub.weight.set_value(rng.uniform(0.5, 1.5, size).astype("float32"))


def _crops(seed: int, count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (int(rng.integers(20, 160)), int(rng.integers(20, 160)), 3),
                         dtype=np.uint8) for _ in range(count)]


def _scene(seed: int, height: int = 240, width: int = 180) -> np.ndarray:
    """Random background with two flat rectangles, so a detector sees some structure."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    image[30:120, 20:100] = (200, 40, 40)
    image[140:220, 90:170] = (30, 180, 60)
    return image


@pytest.fixture(scope="module")
def exported_extractor(tmp_path_factory):
    paddle.seed(21)
    model = build_recognition_model()
    _randomise(model, 1)
    out = tmp_path_factory.mktemp("extractor") / "rec"
    manifest = export_inference_model(model, out, kind="extractor", input_size=REC_SIZE,
                                      name="rec-test", version="7")
    return model, out, manifest


@pytest.fixture(scope="module")
def detector_model():
    paddle.seed(22)
    model = PicoDet(scale=0.5)
    _randomise(model, 2)
    rng = np.random.default_rng(3)
    # He-scaled weights everywhere (the head's N(0, 0.01) init gives near-equal scores, whose
    # order is then decided by float noise), and no prior bias, which would hide every box.
    for conv in model.sublayers():
        if isinstance(conv, paddle.nn.Conv2D):
            fan_in = int(np.prod(conv.weight.shape[1:]))
            conv.weight.set_value(rng.normal(0, np.sqrt(2 / fan_in), conv.weight.shape).astype("float32"))
    for conv in model.head.head_cls_list:
        conv.bias.set_value(np.zeros(conv.bias.shape, "float32"))
    return model


@pytest.fixture(scope="module")
def exported_detector(detector_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("detector") / "det"
    manifest = export_inference_model(detector_model, out, kind="detector", input_size=DET_SIZE,
                                      name="det-test")
    return out, manifest


def _dygraph_rows(model, image: np.ndarray) -> np.ndarray:
    inputs = DetectionPreprocess(target_size=DET_SIZE)(image)
    model.eval()
    bbox, bbox_num = model(paddle.to_tensor(inputs.image), paddle.to_tensor(inputs.im_shape),
                           paddle.to_tensor(inputs.scale_factor))
    rows = bbox.numpy()[: int(bbox_num.numpy()[0])]
    height, width = image.shape[:2]
    rows[:, [2, 4]] = rows[:, [2, 4]].clip(0, width)
    rows[:, [3, 5]] = rows[:, [3, 5]].clip(0, height)
    rows = rows[(rows[:, 4] > rows[:, 2]) & (rows[:, 5] > rows[:, 3])]  # as the wrapper does
    return rows[np.argsort(-rows[:, 1], kind="stable")]


def _box_rows(boxes: list[Box]) -> np.ndarray:
    return np.array([[b.score, b.xmin, b.ymin, b.xmax, b.ymax] for b in boxes], dtype=np.float32)


# --- extractor ------------------------------------------------------------------------


@pytest.mark.slow
def test_exported_extractor_layout_and_manifest(exported_extractor):
    _, out, manifest = exported_extractor
    assert sorted(p.name for p in out.iterdir()) == ["inference.json", "inference.pdiparams",
                                                     "manifest.json"]
    assert manifest.kind == "extractor" and manifest.feature_dim == 512
    assert manifest.input_size == (REC_SIZE, REC_SIZE) and manifest.source == "project"
    assert read_manifest(out) == manifest
    assert program_input_shapes(find_model_files(out)) == {"x": [-1, 3, REC_SIZE, REC_SIZE]}


@pytest.mark.slow
def test_extractor_matches_dygraph_features(exported_extractor):
    model, out, _ = exported_extractor
    extractor = PaddleExtractor.from_dir(out, batch_size=4)  # the official-archive code path
    crops = _crops(5, 6)                                      # 6 crops -> predictor calls of 4 + 2
    features = extractor.extract(crops)
    model.eval()
    expected = model(paddle.to_tensor(RecognitionPreprocess(size=(REC_SIZE, REC_SIZE))(crops))).numpy()
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert features.shape == (6, 512) and features.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-5)
    assert np.abs(features - expected).max() < 1e-4
    one_by_one = np.concatenate([extractor.extract([crop]) for crop in crops])
    assert np.abs(one_by_one - features).max() < 1e-4
    assert extractor.extract([]).shape == (0, 512)


@pytest.mark.slow
def test_extractor_without_onednn_and_without_manifest(exported_extractor, tmp_path):
    model, out, _ = exported_extractor
    bare = tmp_path / "official_like"
    bare.mkdir()
    for name in ("inference.json", "inference.pdiparams"):
        shutil.copy(out / name, bare / name)
    extractor = PaddleExtractor.from_dir(bare, threads=1, use_mkldnn=False, warmup=False)
    assert extractor.manifest is None and extractor.feature_dim == 512
    assert extractor.input_size == (REC_SIZE, REC_SIZE)  # read from the program's data op
    crops = _crops(6, 2)
    reference = PaddleExtractor.from_dir(out).extract(crops)
    assert np.abs(extractor.extract(crops) - reference).max() < 1e-4


class _Upsampling(paddle.nn.Layer):
    """Uses F.interpolate(nearest), which Paddle 3.3's oneDNN executor cannot run from PIR."""

    def __init__(self):
        super().__init__()
        self.conv = paddle.nn.Conv2D(3, 8, 3, stride=2, padding=1)

    def forward(self, x):
        x = paddle.nn.functional.interpolate(self.conv(x), scale_factor=2, mode="nearest")
        return paddle.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)


def test_onednn_failure_falls_back_to_plain_kernels(tmp_path):
    paddle.seed(3)
    layer = _Upsampling()
    export_inference_model(layer, tmp_path / "up", kind="extractor", input_size=16, name="up")
    with pytest.warns(RuntimeWarning, match="oneDNN"):
        extractor = PaddleExtractor.from_dir(tmp_path / "up")
    assert not extractor.runner.use_mkldnn and extractor.feature_dim == 32
    crops = _crops(4, 3)
    expected = layer(paddle.to_tensor(RecognitionPreprocess(size=(16, 16))(crops))).numpy()
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert np.abs(extractor.extract(crops) - expected).max() < 1e-4


# --- detector -------------------------------------------------------------------------


@pytest.mark.slow
def test_detector_matches_dygraph_decode_and_nms(detector_model, exported_detector):
    out, manifest = exported_detector
    assert manifest.kind == "detector" and manifest.labels == ("foreground",)
    assert manifest.extra["nms"]["keep_top_k"] == 100
    config = parse_infer_cfg(out / "infer_cfg.yml")
    assert config.input_size == DET_SIZE and config.preprocess.interpolation == "bicubic"
    detector = PaddleDetector.from_dir(out)
    assert set(detector.runner.input_names) == {"image", "im_shape", "scale_factor"}
    image = _scene(9)
    boxes = detector.detect(image)
    expected = _dygraph_rows(detector_model, image)
    assert len(boxes) == len(expected) > 3
    assert all(a.score >= b.score for a, b in zip(boxes, boxes[1:]))
    assert all(0 <= b.xmin < b.xmax <= image.shape[1] and 0 <= b.ymin < b.ymax <= image.shape[0]
               for b in boxes)
    np.testing.assert_allclose(_box_rows(boxes), expected[:, 1:], atol=1e-4)


@pytest.mark.slow
def test_detector_host_nms_path_gives_same_boxes(detector_model, exported_detector, tmp_path):
    """A program that stops before NMS (boxes + scores) is finished on the host."""
    out, _ = exported_detector
    detector_model.export_nms = False
    try:
        export_inference_model(detector_model, tmp_path / "raw", kind="detector",
                               input_size=DET_SIZE, name="det-raw")
    finally:
        detector_model.export_nms = True
    image = _scene(10)
    in_graph = _box_rows(PaddleDetector.from_dir(out).detect(image))
    on_host = _box_rows(PaddleDetector.from_dir(tmp_path / "raw").detect(image))
    assert len(on_host) == len(in_graph) > 3
    np.testing.assert_allclose(on_host, in_graph, atol=1e-4)


# --- legacy .pdmodel layout (what the official archives ship) -----------------------------

_LEGACY_SCRIPT = textwrap.dedent('''
    """Runs with FLAGS_enable_pir_api=0 so paddle.jit.save writes inference.pdmodel.

    Paddle 3.3's legacy static mode lacks many ops (sigmoid, matmul, ...), so the real nets
    cannot be saved this way; these tiny nets use only ops it still supports, which is
    enough to exercise the .pdmodel loading path end to end.
    """
    import sys
    from pathlib import Path
    import numpy as np
    import paddle
    import paddle.nn as nn
    import paddle.nn.functional as F
    from paddle.static import InputSpec
    from recognition.engine.model_files import write_infer_cfg
    from recognition.engine.nets.picodet import multiclass_nms
    from recognition.engine.preprocess import DetectionPreprocess, RecognitionPreprocess

    out = Path(sys.argv[1])
    paddle.seed(0)

    class TinyExtractor(nn.Layer):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2D(3, 8, 3, stride=2, padding=1)
            self.bn = nn.BatchNorm2D(8)
            self.pool = nn.AdaptiveAvgPool2D(1)
            self.fc = nn.Linear(8, 16)

        def forward(self, x):
            return self.fc(self.pool(F.relu(self.bn(self.conv(x)))).flatten(1))

    class TinyDetector(nn.Layer):
        def __init__(self, size=64, stride=8):
            super().__init__()
            self.conv = nn.Conv2D(3, 5, 3, stride=stride, padding=1)
            cells = (np.arange(size // stride, dtype="float32") + 0.5) * stride
            ys, xs = np.meshgrid(cells, cells, indexing="ij")
            centres = np.stack([xs.ravel(), ys.ravel()], -1)[None].astype("float32")
            self.register_buffer("centres", paddle.to_tensor(centres))

        def forward(self, image, scale_factor):
            out = self.conv(image)
            scores = F.hardsigmoid(out[:, :1] * 3.0).flatten(2)
            dist = F.relu(out[:, 1:]).flatten(2).transpose([0, 2, 1]) * 8.0 + 4.0
            boxes = paddle.concat([self.centres - dist[:, :, :2], self.centres + dist[:, :, 2:]], axis=-1)
            boxes = boxes / paddle.tile(paddle.flip(scale_factor, [1]), [1, 2]).unsqueeze(1)
            return multiclass_nms(boxes, scores, score_threshold=0.025, nms_top_k=1000,
                                  keep_top_k=100, nms_threshold=0.6)

    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (40 + 7 * i, 50, 3), dtype=np.uint8) for i in range(3)]
    image = rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)

    extractor = TinyExtractor()
    extractor.eval()
    paddle.jit.save(extractor, str(out / "rec" / "inference"),
                    input_spec=[InputSpec([None, 3, 32, 32], "float32", "x")])
    features = extractor(paddle.to_tensor(RecognitionPreprocess(size=(32, 32))(crops))).numpy()

    detector = TinyDetector()
    detector.eval()
    paddle.jit.save(detector, str(out / "det" / "inference"),
                    input_spec=[InputSpec([None, 3, 64, 64], "float32", "image"),
                                InputSpec([None, 2], "float32", "scale_factor")])
    preprocess = DetectionPreprocess(target_size=(64, 64))
    write_infer_cfg(out / "det" / "infer_cfg.yml", preprocess=preprocess, labels=["foreground"])
    inputs = preprocess(image)
    bbox, bbox_num = detector(paddle.to_tensor(inputs.image), paddle.to_tensor(inputs.scale_factor))
    np.savez(out / "expected.npz", crops=np.array(crops, dtype=object), image=image,
             features=features, bbox=bbox.numpy()[: int(bbox_num.numpy()[0])])
''')


@pytest.fixture(scope="module")
def legacy_models(tmp_path_factory):
    out = tmp_path_factory.mktemp("legacy")
    script = out / "make_legacy.py"
    script.write_text(_LEGACY_SCRIPT)
    env = {**os.environ, "FLAGS_enable_pir_api": "0", "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run([sys.executable, str(script), str(out)], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return out, np.load(out / "expected.npz", allow_pickle=True)


@pytest.mark.slow
def test_pdmodel_extractor_loads_through_the_same_path(legacy_models):
    out, expected = legacy_models
    assert sorted(p.name for p in (out / "rec").iterdir() if p.suffix != ".info") == [
        "inference.pdiparams", "inference.pdmodel"]
    assert program_input_shapes(find_model_files(out / "rec")) == {"x": [-1, 3, 32, 32]}
    extractor = PaddleExtractor.from_dir(out / "rec")
    assert extractor.feature_dim == 16 and extractor.input_size == (32, 32)
    features = extractor.extract(list(expected["crops"]))
    reference = expected["features"] / np.linalg.norm(expected["features"], axis=1, keepdims=True)
    assert np.abs(features - reference).max() < 1e-4


@pytest.mark.slow
def test_pdmodel_detector_loads_through_the_same_path(legacy_models):
    out, expected = legacy_models
    detector = PaddleDetector.from_dir(out / "det")
    assert detector.runner.input_names == ["image", "scale_factor"]  # im_shape unused, pruned
    assert detector.input_size == (64, 64) and detector.labels == ("foreground",)
    image = expected["image"]
    rows = expected["bbox"]
    rows[:, [2, 4]] = rows[:, [2, 4]].clip(0, image.shape[1])
    rows[:, [3, 5]] = rows[:, [3, 5]].clip(0, image.shape[0])
    rows = rows[(rows[:, 4] > rows[:, 2]) & (rows[:, 5] > rows[:, 3])]
    rows = rows[np.argsort(-rows[:, 1], kind="stable")]
    boxes = detector.detect(image)
    assert len(boxes) == len(rows) > 0
    np.testing.assert_allclose(_box_rows(boxes), rows[:, 1:], atol=1e-4)


# --- install ----------------------------------------------------------------------------


def _tar_dir(directory: Path, archive: Path, arcname: str) -> Path:
    with tarfile.open(archive, "w:gz") as bundle:
        bundle.add(directory, arcname=arcname)
    return archive


@pytest.mark.slow
def test_install_archive_from_tar_registers_model(exported_extractor, tmp_path):
    _, out, exported = exported_extractor
    archive = _tar_dir(out, tmp_path / "rec-test_infer.tar.gz", "rec-test_infer")
    root = tmp_path / "models"
    manifest = install_archive(archive, root)
    target = root / "extractor" / "rec-test"
    assert manifest.name == "rec-test" and manifest.version == "7" and manifest.source == "project"
    assert manifest.feature_dim == 512 and manifest.files == exported.files
    assert sorted(p.name for p in target.iterdir()) == ["inference.json", "inference.pdiparams",
                                                        "manifest.json"]
    assert installed_models(root) == [manifest] and read_manifest(target) == manifest
    assert not [p for p in root.iterdir() if p.name.startswith(".install-")]  # staging cleaned
    assert PaddleExtractor.from_dir(target).feature_dim == 512
    assert install_archive(archive, root) == manifest  # same files again: a no-op


@pytest.mark.slow
def test_install_refuses_to_clobber_without_overwrite(exported_extractor, legacy_models, tmp_path):
    _, out, _ = exported_extractor
    legacy_dir, _ = legacy_models
    root = tmp_path / "models"
    install_archive(out, root)
    with pytest.raises(ModelInstallError, match="already installed"):
        install_archive(legacy_dir / "rec", root, name="rec-test")
    replaced = install_archive(legacy_dir / "rec", root, name="rec-test", overwrite=True)
    assert replaced.feature_dim == 16 and replaced.source == "official"
    assert replaced.program_format == "pdmodel"
    assert read_manifest(root / "extractor" / "rec-test") == replaced


@pytest.mark.slow
def test_install_detector_from_zip(exported_detector, tmp_path):
    out, _ = exported_detector
    archive = tmp_path / "picodet_mainbody_v1.2_infer.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for path in out.iterdir():
            if path.name != "manifest.json":  # like an official archive: no manifest
                bundle.write(path, f"picodet_mainbody_v1.2_infer/{path.name}")
    manifest = install_archive(archive, tmp_path / "models")
    assert manifest.kind == "detector" and manifest.name == "picodet_mainbody_v1.2"
    assert manifest.version == "v1.2" and manifest.source == "official"
    assert manifest.input_size == DET_SIZE and manifest.labels == ("foreground",)
    assert set(manifest.files) == {"inference.json", "inference.pdiparams", "infer_cfg.yml"}


@pytest.mark.slow
def test_install_from_url(exported_extractor, tmp_path):
    _, out, _ = exported_extractor
    served = tmp_path / "served"
    served.mkdir()
    _tar_dir(out, served / "rec-test_infer.tar", "rec-test_infer")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/rec-test_infer.tar"
        manifest = install_archive(url, tmp_path / "models")
        assert manifest.kind == "extractor" and manifest.extra["installed_from"] == url
        with pytest.raises(ModelInstallError, match="HTTP 404"):
            install_archive(url.replace("rec-test", "missing"), tmp_path / "models")
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_install_refuses_symlinked_directory_files(exported_extractor, tmp_path):
    _, out, _ = exported_extractor
    source = tmp_path / "linked"
    source.mkdir()
    shutil.copy(out / "inference.json", source / "inference.json")
    (source / "inference.pdiparams").symlink_to(out / "inference.pdiparams")
    with pytest.raises(ModelInstallError, match="symbolic links"):
        install_archive(source, tmp_path / "models")


def test_install_from_unreachable_url_fails_fast(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again once we leave the block
    url = f"http://127.0.0.1:{port}/general_PPLCNetV2_base_pretrained_v1.0_infer.tar"
    started = time.monotonic()
    with pytest.raises(ModelInstallError) as caught:
        install_archive(url, tmp_path / "models", timeout=3)
    assert time.monotonic() - started < 5
    assert url in str(caught.value) and "local file" in str(caught.value)
    assert caught.value.code == "model_install_error"


def _tar_with(members: list[tuple[tarfile.TarInfo, bytes | None]], path: Path) -> Path:
    with tarfile.open(path, "w") as bundle:
        for info, data in members:
            bundle.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file_member(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


@pytest.mark.parametrize("attack", ["dotdot", "absolute", "symlink", "hardlink", "device"])
def test_install_refuses_malicious_tar(tmp_path, attack):
    if attack == "dotdot":
        members = [_file_member("model/inference.json"), _file_member("model/../../evil.txt")]
    elif attack == "absolute":
        members = [_file_member(str(tmp_path / "evil.txt"))]
    elif attack == "symlink":
        link = tarfile.TarInfo("model/inference.pdiparams")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        members = [_file_member("model/inference.json"), (link, None)]
    elif attack == "hardlink":
        link = tarfile.TarInfo("model/inference.pdiparams")
        link.type, link.linkname = tarfile.LNKTYPE, "/etc/passwd"
        members = [(link, None)]
    else:
        device = tarfile.TarInfo("model/inference.pdiparams")
        device.type = tarfile.CHRTYPE
        members = [(device, None)]
    archive = _tar_with(members, tmp_path / "bad.tar")
    root = tmp_path / "models"
    with pytest.raises(ModelInstallError):
        install_archive(archive, root)
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path.parent / "evil.txt").exists()
    assert sorted(p.name for p in root.iterdir()) == []  # nothing installed, staging removed


def test_install_refuses_zip_escape_symlink_and_oversize(tmp_path):
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("../evil.txt", b"x")
    with pytest.raises(ModelInstallError, match=r"\.\."):
        install_archive(archive, tmp_path / "models")
    linked = tmp_path / "link.zip"
    with zipfile.ZipFile(linked, "w") as bundle:
        info = zipfile.ZipInfo("model/inference.pdiparams")
        info.external_attr = (0o120777 << 16)  # S_IFLNK, as `zip --symlinks` stores it
        bundle.writestr(info, "/etc/passwd")
    with pytest.raises(ModelInstallError, match="symbolic link"):
        install_archive(linked, tmp_path / "models")
    big = tmp_path / "big.zip"
    with zipfile.ZipFile(big, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("model/inference.pdiparams", b"\0" * 200_000)
    with pytest.raises(ModelInstallError, match="larger than allowed"):
        install_archive(big, tmp_path / "models", max_bytes=100_000)


def test_install_rejects_archive_without_a_model(tmp_path):
    archive = _tar_with([_file_member("docs/readme.txt", b"hello")], tmp_path / "empty.tar")
    with pytest.raises(ModelInstallError, match="no inference model"):
        install_archive(archive, tmp_path / "models")


def test_find_model_files_layouts(tmp_path):
    with pytest.raises(ModelNotFound):
        find_model_files(tmp_path)
    nested = tmp_path / "archive_infer"
    nested.mkdir()
    (nested / "inference.pdmodel").write_bytes(b"")
    (nested / "inference.pdiparams").write_bytes(b"")
    found = find_model_files(tmp_path)  # one level down, as archives unpack
    assert found.program.name == "inference.pdmodel" and found.program_format == "pdmodel"
    (nested / "inference.json").write_text("{}")
    assert find_model_files(nested).program.name == "inference.json"  # PIR preferred


# --- preprocessing ----------------------------------------------------------------------

_SOURCE = (np.arange(6 * 7 * 3).reshape(6, 7, 3) * 37 % 256).astype(np.uint8)
# cv2.resize(_SOURCE, (w, h), interpolation=...)[:, :, 0] recorded from OpenCV 5.0.0 (resize now calls the pinned
# OpenCV for uint8 bilinear/bicubic; these pin its behaviour across upgrades, and the float path below checks the numpy one).
_CV2_CHANNEL0 = {
    ("bilinear", (4, 3)): [[76, 79, 82], [89, 93, 96], [103, 106, 109], [116, 120, 123]],
    ("bicubic", (4, 3)): [[65, 79, 64], [79, 92, 77], [100, 107, 92], [136, 120, 105]],
    ("bilinear", (9, 11)): [
        [0, 50, 121, 192, 169, 77, 148, 148, 56, 103, 154],
        [5, 55, 126, 196, 174, 82, 152, 153, 61, 108, 159],
        [10, 61, 131, 202, 180, 87, 158, 159, 67, 114, 164],
        [16, 67, 137, 208, 186, 93, 164, 165, 73, 120, 170],
        [23, 73, 144, 214, 192, 100, 170, 171, 79, 126, 177],
        [28, 79, 146, 189, 171, 105, 176, 177, 85, 132, 182],
        [34, 85, 136, 71, 68, 111, 182, 183, 91, 138, 188],
        [41, 91, 138, 46, 47, 118, 188, 189, 97, 144, 195],
        [45, 95, 143, 50, 51, 122, 193, 193, 101, 148, 199]],
    ("bicubic", (9, 11)): [
        [0, 40, 126, 214, 176, 76, 155, 158, 47, 91, 163],
        [0, 44, 130, 218, 180, 81, 160, 163, 52, 96, 168],
        [1, 51, 137, 225, 188, 88, 167, 170, 59, 103, 175],
        [6, 57, 142, 231, 193, 93, 172, 175, 64, 108, 180],
        [12, 61, 151, 255, 218, 100, 177, 182, 71, 114, 187],
        [19, 72, 152, 212, 178, 106, 187, 188, 77, 121, 193],
        [24, 93, 143, 60, 44, 111, 204, 193, 82, 126, 198],
        [31, 105, 145, 16, 5, 118, 215, 201, 89, 133, 205],
        [36, 108, 152, 41, 27, 123, 218, 205, 94, 138, 210]],
}


@pytest.mark.parametrize("method,size", sorted(_CV2_CHANNEL0))
def test_resize_matches_opencv(method, size):
    ours = resize(_SOURCE, size, method)[:, :, 0].astype(int)
    assert np.abs(ours - np.array(_CV2_CHANNEL0[(method, size)])).max() <= 1  # rounding only


@pytest.mark.parametrize("method,size", sorted(_CV2_CHANNEL0))
def test_numpy_resize_path_matches_opencv(method, size):
    ours = resize(_SOURCE.astype(np.float32), size, method)[:, :, 0].astype(int)  # not uint8: the numpy path
    assert np.abs(ours - np.array(_CV2_CHANNEL0[(method, size)])).max() <= 1


def test_detection_inputs_carry_scale_factor():
    inputs = DetectionPreprocess(target_size=(640, 640))(np.zeros((480, 320, 3), np.uint8))
    assert inputs.image.shape == (1, 3, 640, 640) and inputs.image.dtype == np.float32
    np.testing.assert_allclose(inputs.im_shape, [[640, 640]])
    np.testing.assert_allclose(inputs.scale_factor, [[640 / 480, 640 / 320]])
    batch = RecognitionPreprocess()([np.full((10, 30, 3), 255, np.uint8)])
    np.testing.assert_allclose(batch[0, :, 0, 0], (1 - np.array([0.485, 0.456, 0.406])) /
                               np.array([0.229, 0.224, 0.225]), rtol=1e-5)
