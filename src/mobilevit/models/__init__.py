"""The architecture: config dataclasses, layers, the MobileViT block, the backbone, the v1 family
(its table and registered builders), the name table and the factory (``create_model``)."""

from . import mobilevit as _mobilevit  # noqa: F401  (registers the v1 classifiers)
from .backbone import FeatureInfo, MobileViT
from .config import MobileViTConfig, StageSpec
from .factory import create_model
from .registry import expected_params, list_models, model_entrypoint, register_model

__all__ = [
    "FeatureInfo",
    "MobileViT",
    "MobileViTConfig",
    "StageSpec",
    "create_model",
    "expected_params",
    "list_models",
    "model_entrypoint",
    "register_model",
]
