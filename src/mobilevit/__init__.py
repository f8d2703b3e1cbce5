"""MobileViT (Mehta & Rastegari, ICLR 2022) in PyTorch."""

from . import variants as _variants  # noqa: F401  (registers the models)
from .backbone import FeatureInfo, MobileViT
from .config import MobileViTConfig, StageSpec
from .export.fast import optimize_for_inference
from .registry import create_model, list_models, register_model

__all__ = [
    "FeatureInfo",
    "MobileViT",
    "MobileViTConfig",
    "StageSpec",
    "create_model",
    "optimize_for_inference",
    "list_models",
    "register_model",
]
__version__ = "0.1.0"
