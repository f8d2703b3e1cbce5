"""The architecture: config dataclasses, layers, the MobileViT block, the backbone, the v1 family
(its table and registered builders), v2 and v3, the name table and the factory (``create_model``)."""

from . import mobilevit as _mobilevit  # noqa: F401  (registers the v1 classifiers)
from . import mobilevitv2 as _mobilevitv2  # noqa: F401  (registers the v2 classifiers)
from . import mobilevitv3 as _mobilevitv3  # noqa: F401  (registers the v3 classifiers)
from .backbone import BackboneBase, FeatureInfo, MobileViT
from .config import MobileViTConfig, StageSpec
from .factory import create_model
from .mobilevitv2 import MobileViTv2, MobileViTv2Config
from .registry import expected_params, list_models, model_entrypoint, register_model

__all__ = [
    "BackboneBase",
    "FeatureInfo",
    "MobileViT",
    "MobileViTConfig",
    "MobileViTv2",
    "MobileViTv2Config",
    "StageSpec",
    "create_model",
    "expected_params",
    "list_models",
    "model_entrypoint",
    "register_model",
]
