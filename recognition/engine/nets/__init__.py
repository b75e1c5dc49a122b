"""Paddle networks of PP-ShiTuV2: the feature extractor and the mainbody detector."""

from .colour import ColourHistogram
from .heads import FC
from .lcnet import LCNet
from .necks import BNNeck
from .picodet import CSPPAN, PicoDet, PicoHead, picodet_mainbody
from .pplcnetv2 import (PPLCNetV2, RepDepthwiseSeparable, pplcnetv2_base,
                        pplcnetv2_base_shitu, reparameterize)
from .recognition_model import RecognitionModel, build_recognition_model

__all__ = [
    "BNNeck", "CSPPAN", "ColourHistogram", "FC", "LCNet", "PPLCNetV2", "PicoDet", "PicoHead",
    "RecognitionModel", "RepDepthwiseSeparable", "build_recognition_model",
    "picodet_mainbody", "pplcnetv2_base", "pplcnetv2_base_shitu", "reparameterize",
]
