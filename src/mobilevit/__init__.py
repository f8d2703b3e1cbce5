"""MobileViT (Mehta & Rastegari, ICLR 2022) in PyTorch."""

from . import heads as _heads  # noqa: F401  (registers DeepLabv3 and SSDLite)
from .export.optimize import optimize_for_inference
from .loading import load_model
from .models import (
    FeatureInfo,
    MobileViT,
    MobileViTConfig,
    StageSpec,
    create_model,
    list_models,
    register_model,
)

__all__ = [
    "FeatureInfo",
    "MobileViT",
    "MobileViTConfig",
    "StageSpec",
    "create_model",
    "list_models",
    "load_model",
    "optimize_for_inference",
    "register_model",
]
__version__ = "0.1.0"
