"""Synthetic training data for the feature extractor, made from openly licensed artwork.

An *identity* is one thing drawn by one or more designers (an emoji across Twemoji, OpenMoji,
Noto and Fluent; a brand logo in its colours; a country flag in two crops). ``render`` puts
each identity on product-like packages in varied scenes; ``build`` writes the images and a
PaddleClas label file. Nothing here downloads anything: ``sources`` reads packages that
``python -m training.data_builder.build --install`` (or the documented commands) put into a
cache folder under ``var/``.
"""

from .sources import Artwork, Identity, SourceMissing, SOURCES, load_identities

__all__ = ["Artwork", "Identity", "SOURCES", "SourceMissing", "load_identities"]
