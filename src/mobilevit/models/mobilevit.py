"""MobileViT v1 (Mehta & Rastegari, ICLR 2022): the paper's three variants (Table 4, Appendix A),
XXS, XS and S, as config constants, and their registered classifier builders."""

from __future__ import annotations

from typing import Any

from .backbone import MobileViT
from .config import MobileViTConfig, StageSpec
from .registry import register_model


def vit_stage(out: int, dim: int, depth: int, t: float) -> StageSpec:
    """A MobileViT stage: stride-2 MV2 (expansion ``t``) to ``out`` channels, then a block of width ``dim``.

    Args:
        out: the stage's output channels.
        dim: the transformer's width d.
        depth: the transformer's layers.
        t: the MV2 expansion ratio.

    Returns:
        The `StageSpec`.
    """
    return StageSpec(out, stride=2, expand_ratio=t, transformer_dim=dim, transformer_depth=depth)


MOBILEVIT_XXS = MobileViTConfig(
    name="mobilevit_xxs",
    stages=(
        StageSpec(16, stride=1, num_blocks=1, expand_ratio=2),
        StageSpec(24, stride=2, num_blocks=3, expand_ratio=2),
        vit_stage(48, 64, 2, 2),
        vit_stage(64, 80, 4, 2),
        vit_stage(80, 96, 3, 2),
    ),
    transformer_dropout=0.05,
)

MOBILEVIT_XS = MobileViTConfig(
    name="mobilevit_xs",
    stages=(
        StageSpec(32, stride=1, num_blocks=1, expand_ratio=4),
        StageSpec(48, stride=2, num_blocks=3, expand_ratio=4),
        vit_stage(64, 96, 2, 4),
        vit_stage(80, 120, 4, 4),
        vit_stage(96, 144, 3, 4),
    ),
)

MOBILEVIT_S = MobileViTConfig(
    name="mobilevit_s",
    stages=(
        StageSpec(32, stride=1, num_blocks=1, expand_ratio=4),
        StageSpec(64, stride=2, num_blocks=3, expand_ratio=4),
        vit_stage(96, 144, 2, 4),
        vit_stage(128, 192, 4, 4),
        vit_stage(160, 240, 3, 4),
    ),
)

CONFIGS: dict[str, MobileViTConfig] = {c.name: c for c in (MOBILEVIT_XXS, MOBILEVIT_XS, MOBILEVIT_S)}


def build_mobilevit(config: MobileViTConfig, features_only: bool = False, **overrides: Any) -> MobileViT:
    """A `MobileViT` of ``config`` with ``overrides`` (config fields) applied.

    Args:
        config: the variant's config.
        features_only: the stage-level backbone the heads build on (no expansion conv, no head);
            for timm's list of maps use ``create_model(..., features_only=True)``.
        **overrides: config fields to change, e.g. ``num_classes=10`` or ``output_stride=16``.

    Returns:
        The network.
    """
    return MobileViT(config.replace(**overrides) if overrides else config, features_only=features_only)


@register_model("mobilevit_xxs", params=1_272_024)
def mobilevit_xxs(**kwargs: Any) -> MobileViT:
    """MobileViT-XXS: 1,272,024 parameters, 69.0% ImageNet top-1 (paper)."""
    return build_mobilevit(MOBILEVIT_XXS, **kwargs)


@register_model("mobilevit_xs", params=2_317_848)
def mobilevit_xs(**kwargs: Any) -> MobileViT:
    """MobileViT-XS: 2,317,848 parameters, 74.8% ImageNet top-1 (paper)."""
    return build_mobilevit(MOBILEVIT_XS, **kwargs)


@register_model("mobilevit_s", params=5_578_632)
def mobilevit_s(**kwargs: Any) -> MobileViT:
    """MobileViT-S: 5,578,632 parameters, 78.4% ImageNet top-1 (paper)."""
    return build_mobilevit(MOBILEVIT_S, **kwargs)


# --------------------------------------------------------------------------- DeepLabv3
