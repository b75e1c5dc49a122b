"""Typed engine errors: every failure the platform can show a user has a stable machine-readable `code`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class EngineError(Exception):
    """Base of every engine error; `code` is stable for APIs, the message is for humans."""

    code: str = "engine_error"

    def __init__(self, message: str, *, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = dict(details or {})

    def __str__(self) -> str:
        return self.message


# --- image intake -----------------------------------------------------------------


class ImageError(EngineError):
    """An uploaded image could not be turned into pixels we are willing to process."""

    code = "image_error"


class EmptyImage(ImageError):
    code = "empty_image"


class TruncatedImage(ImageError):
    code = "truncated_image"


class NotAnImage(ImageError):
    code = "not_an_image"


class UnsupportedImageFormat(ImageError):
    code = "unsupported_image_format"


class ImageTooLarge(ImageError):
    """Too many pixels (also raised for decompression bombs, before any pixel is decoded)."""

    code = "image_too_large"


class ImageTooSmall(ImageError):
    code = "image_too_small"


class FileTooLarge(ImageError):
    code = "file_too_large"


# --- models -----------------------------------------------------------------------


class ModelError(EngineError):
    code = "model_error"


class ModelNotFound(ModelError):
    code = "model_not_found"


class ModelFormatError(ModelError):
    code = "model_format_error"


class ModelInstallError(ModelError):
    code = "model_install_error"


# --- vector search ----------------------------------------------------------------


class SearchIndexError(EngineError):
    """Bad input to, or a corrupt serialisation of, a vector index."""

    code = "search_index_error"


class DimensionMismatch(SearchIndexError):
    code = "dimension_mismatch"


__all__ = [
    "EngineError",
    "ImageError",
    "EmptyImage",
    "TruncatedImage",
    "NotAnImage",
    "UnsupportedImageFormat",
    "ImageTooLarge",
    "ImageTooSmall",
    "FileTooLarge",
    "ModelError",
    "ModelNotFound",
    "ModelFormatError",
    "ModelInstallError",
    "SearchIndexError",
    "DimensionMismatch",
]
