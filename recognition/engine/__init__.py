"""ShiTu recognition engine: pure Python + numpy + paddle + faiss, no Django.

Paddle-backed pieces (engine-B's `inference`) are imported lazily on first attribute access, so
`import recognition.engine` stays cheap and works where paddle or a model is absent.
"""

from __future__ import annotations

import importlib
from typing import Any

from .baseline import ColourHistogramExtractor
from .boxes import clip_box, crop, iou, nms
from .cpu_runtime import quiet_idle_threads
from .errors import (
    DimensionMismatch,
    EmptyImage,
    EngineError,
    FileTooLarge,
    ImageError,
    ImageTooLarge,
    ImageTooSmall,
    ModelError,
    ModelFormatError,
    ModelInstallError,
    ModelNotFound,
    NotAnImage,
    SearchIndexError,
    TruncatedImage,
    UnsupportedImageFormat,
)
from .imageio import load_image, load_image_file
from .pipeline import GivenBoxDetector, PipelineParams, RecognitionPipeline, StageTimings, TimedRecognition
from .search import VectorIndex
from .types import Box, Detector, Extractor, Match, RecognizedObject

quiet_idle_threads()  # before any model runs, in every process that uses the engine: see cpu_runtime.py

# name -> module that defines it; resolved on first access (PEP 562).
_LAZY = {
    "PaddleExtractor": ".inference",
    "PaddleDetector": ".inference",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name, __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "Box",
    "ColourHistogramExtractor",
    "Detector",
    "DimensionMismatch",
    "EmptyImage",
    "EngineError",
    "Extractor",
    "FileTooLarge",
    "GivenBoxDetector",
    "ImageError",
    "ImageTooLarge",
    "ImageTooSmall",
    "Match",
    "ModelError",
    "ModelFormatError",
    "ModelInstallError",
    "ModelNotFound",
    "NotAnImage",
    "PaddleDetector",
    "PaddleExtractor",
    "PipelineParams",
    "RecognitionPipeline",
    "RecognizedObject",
    "SearchIndexError",
    "StageTimings",
    "TimedRecognition",
    "TruncatedImage",
    "UnsupportedImageFormat",
    "VectorIndex",
    "clip_box",
    "crop",
    "iou",
    "load_image",
    "load_image_file",
    "nms",
]
