"""The paper's three variants (Table 4, Appendix A): MobileViT-XXS, -XS and -S."""

from __future__ import annotations

from typing import Any

from .backbone import MobileViT
from .config import MobileViTConfig, StageSpec
from .registry import register_model


def _vit(out: int, dim: int, depth: int, t: float) -> StageSpec:
    return StageSpec(out, stride=2, expand_ratio=t, transformer_dim=dim, transformer_depth=depth)


MOBILEVIT_XXS = MobileViTConfig(
    name="mobilevit_xxs",
    stages=(
        StageSpec(16, stride=1, num_blocks=1, expand_ratio=2),
        StageSpec(24, stride=2, num_blocks=3, expand_ratio=2),
        _vit(48, 64, 2, 2),
        _vit(64, 80, 4, 2),
        _vit(80, 96, 3, 2),
    ),
    transformer_dropout=0.05,
)

MOBILEVIT_XS = MobileViTConfig(
    name="mobilevit_xs",
    stages=(
        StageSpec(32, stride=1, num_blocks=1, expand_ratio=4),
        StageSpec(48, stride=2, num_blocks=3, expand_ratio=4),
        _vit(64, 96, 2, 4),
        _vit(80, 120, 4, 4),
        _vit(96, 144, 3, 4),
    ),
)

MOBILEVIT_S = MobileViTConfig(
    name="mobilevit_s",
    stages=(
        StageSpec(32, stride=1, num_blocks=1, expand_ratio=4),
        StageSpec(64, stride=2, num_blocks=3, expand_ratio=4),
        _vit(96, 144, 2, 4),
        _vit(128, 192, 4, 4),
        _vit(160, 240, 3, 4),
    ),
)

CONFIGS: dict[str, MobileViTConfig] = {c.name: c for c in (MOBILEVIT_XXS, MOBILEVIT_XS, MOBILEVIT_S)}


def build_mobilevit(config: MobileViTConfig, features_only: bool = False, **overrides: Any) -> MobileViT:
    return MobileViT(config.replace(**overrides) if overrides else config, features_only=features_only)


@register_model("mobilevit_xxs")
def mobilevit_xxs(**kwargs: Any) -> MobileViT:
    """MobileViT-XXS: 1,272,024 parameters, 69.0% ImageNet top-1 (paper)."""
    return build_mobilevit(MOBILEVIT_XXS, **kwargs)


@register_model("mobilevit_xs")
def mobilevit_xs(**kwargs: Any) -> MobileViT:
    """MobileViT-XS: 2,317,848 parameters, 74.8% ImageNet top-1 (paper)."""
    return build_mobilevit(MOBILEVIT_XS, **kwargs)


@register_model("mobilevit_s")
def mobilevit_s(**kwargs: Any) -> MobileViT:
    """MobileViT-S: 5,578,632 parameters, 78.4% ImageNet top-1 (paper)."""
    return build_mobilevit(MOBILEVIT_S, **kwargs)


# --------------------------------------------------------------------------- DeepLabv3
def build_deeplabv3(
    config: MobileViTConfig,
    num_classes: int = 21,
    output_stride: int = 16,
    backbone_weights: str | None = None,
    aspp_channels: int = 256,
    **overrides: Any,
):
    """DeepLabv3 with a MobileViT backbone; ``backbone_weights`` loads classifier weights into it."""
    from .heads.deeplabv3 import DeepLabV3

    backbone = build_mobilevit(config, features_only=True, output_stride=output_stride, **overrides)
    if backbone_weights:
        from .weights import load_backbone_weights

        load_backbone_weights(backbone, backbone_weights)
    return DeepLabV3(backbone, num_classes=num_classes, aspp_channels=aspp_channels)


@register_model("deeplabv3_mobilevit_xxs")
def deeplabv3_mobilevit_xxs(**kwargs: Any):
    """DeepLabv3-MobileViT-XXS: 1,854,853 parameters at 21 classes, 73.6 mIoU on VOC (paper)."""
    return build_deeplabv3(MOBILEVIT_XXS, **kwargs)


@register_model("deeplabv3_mobilevit_xs")
def deeplabv3_mobilevit_xs(**kwargs: Any):
    """DeepLabv3-MobileViT-XS: 2.94M parameters, 77.1 mIoU on VOC (paper)."""
    return build_deeplabv3(MOBILEVIT_XS, **kwargs)


@register_model("deeplabv3_mobilevit_s")
def deeplabv3_mobilevit_s(**kwargs: Any):
    """DeepLabv3-MobileViT-S: 6.36M parameters, 79.1 mIoU on VOC (paper)."""
    return build_deeplabv3(MOBILEVIT_S, **kwargs)


# --------------------------------------------------------------------------- SSDLite
def build_ssdlite(
    config: MobileViTConfig,
    num_classes: int = 81,
    backbone_weights: str | None = None,
    ssd: dict[str, Any] | None = None,
    **overrides: Any,
):
    """SSDLite with a MobileViT backbone (output stride 32); ``num_classes`` counts the background.

    ``backbone_weights`` loads ImageNet classifier weights into the backbone; ``ssd`` changes
    :class:`~mobilevit.heads.ssdlite.SSDLiteConfig` fields (e.g. ``{"image_size": (256, 256)}``).
    """
    from .heads.ssdlite import SSDLite, SSDLiteConfig, SSDLiteFeatures

    backbone = build_mobilevit(config, features_only=True, **overrides)
    if backbone_weights:
        from .weights import load_backbone_weights

        load_backbone_weights(backbone, backbone_weights)
    cfg = SSDLiteConfig().replace(**ssd) if ssd else SSDLiteConfig()
    features = SSDLiteFeatures(backbone, cfg.extra_channels, cfg.pool_channels)
    return SSDLite(features, num_classes=num_classes, config=cfg)


@register_model("ssdlite_mobilevit_xxs")
def ssdlite_mobilevit_xxs(**kwargs: Any):
    """SSDLite-MobileViT-XXS: 1,755,050 parameters at 81 classes, 19.9 COCO mAP (ml-cvnets)."""
    return build_ssdlite(MOBILEVIT_XXS, **kwargs)


@register_model("ssdlite_mobilevit_xs")
def ssdlite_mobilevit_xs(**kwargs: Any):
    """SSDLite-MobileViT-XS: 2.7M parameters at 81 classes, 24.8 COCO mAP (paper)."""
    return build_ssdlite(MOBILEVIT_XS, **kwargs)


@register_model("ssdlite_mobilevit_s")
def ssdlite_mobilevit_s(**kwargs: Any):
    """SSDLite-MobileViT-S: 5.7M parameters at 81 classes, 27.7 COCO mAP (paper)."""
    return build_ssdlite(MOBILEVIT_S, **kwargs)
