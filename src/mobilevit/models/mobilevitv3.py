"""MobileViT v3 (Wadekar & Chaurasia, "MobileViTv3: Mobile-Friendly Vision Transformer with
Simple and Effective Fusion of Local, Global and Input Features", arXiv 2209.15159, 2022).

The v3 paper changes only the fusion at the end of the MobileViT block (Section 3, Figure 1)
and keeps each network's frame:

- **v3 on v1** (XXS / XS / S): the fusion conv is 1x1 instead of n x n and takes the local
  branch's d-channel features with the global ones (instead of the block input with them); the
  block input is added to its output; the local 3x3 conv is depthwise. The channels are wider than
  v1's at the same size (Section 3.2, the table of layer widths), with a 16-channel stem, MV2
  expansion 2 (XXS) or 4 (XS, S) and the 1x1 expansion to min(4 * C5, 960) before the classifier.
- **v3 on v2** (widths 0.5 / 0.75 / 1.0): v2's 1x1 projection takes the folded global features
  with the local ones (2d -> C), and the block's input is added to its output. Channels, depths
  and head are v2's.

Both are the v1 / v2 modules with the config fields ``fusion`` (and for v1 ``fusion_residual``,
``local_depthwise``) set; the backbone contract is unchanged, so DeepLabv3 and SSDLite take v3 as
they take v1 and v2. Input convention of the released weights: v3 on v1 was trained with
ml-cvnets v0.1 (OpenCV, BGR), v3 on v2 with v0.2 (PIL, RGB); the converter records it.
"""

from __future__ import annotations

from functools import partial

from .config import MobileViTConfig, StageSpec
from .mobilevit import build_mobilevit, vit_stage
from .mobilevitv2 import WIDTHS, MobileViTv2Config, build_mobilevitv2
from .registry import register_builder

# The reference code's licence (micronDLA/MobileViTv3): printed when its checkpoints are converted.
V3_LICENSE = (
    "MobileViTv3 weights released by micronDLA are under the MICRON TECHNOLOGY, INC. SOFTWARE "
    "LICENSE AGREEMENT: personal, non-commercial use only"
)


_V3_BLOCK = {"fusion": "v3", "fusion_residual": True, "local_depthwise": True}

MOBILEVITV3_XXS = MobileViTConfig(
    name="mobilevitv3_xxs",
    stages=(
        StageSpec(16, stride=1, num_blocks=1, expand_ratio=2),
        StageSpec(24, stride=2, num_blocks=3, expand_ratio=2),
        vit_stage(64, 64, 2, 2),
        vit_stage(80, 80, 4, 2),
        vit_stage(128, 96, 3, 2),
    ),
    **_V3_BLOCK,
)

MOBILEVITV3_XS = MobileViTConfig(
    name="mobilevitv3_xs",
    stages=(
        StageSpec(32, stride=1, num_blocks=1, expand_ratio=4),
        StageSpec(48, stride=2, num_blocks=3, expand_ratio=4),
        vit_stage(96, 96, 2, 4),
        vit_stage(160, 120, 4, 4),
        vit_stage(160, 144, 3, 4),
    ),
    **_V3_BLOCK,
)

MOBILEVITV3_S = MobileViTConfig(
    name="mobilevitv3_s",
    stages=(
        StageSpec(32, stride=1, num_blocks=1, expand_ratio=4),
        StageSpec(64, stride=2, num_blocks=3, expand_ratio=4),
        vit_stage(128, 144, 2, 4),
        vit_stage(256, 192, 4, 4),
        vit_stage(320, 240, 3, 4),
    ),
    **_V3_BLOCK,
)

CONFIGS_V3: dict[str, MobileViTConfig] = {c.name: c for c in (MOBILEVITV3_XXS, MOBILEVITV3_XS, MOBILEVITV3_S)}

V3_V2_WIDTHS = ("050", "075", "100")  # the widths with released weights (and fixtures)

CONFIGS_V3_V2: dict[str, MobileViTv2Config] = {
    f"mobilevitv3_{w}": MobileViTv2Config(name=f"mobilevitv3_{w}", width_multiplier=WIDTHS[w], fusion="v3")
    for w in V3_V2_WIDTHS
}

_PARAMS = {  # at 1000 classes, as the reference code counts them (fixtures' manifests)
    "mobilevitv3_xxs": 1_249_448,
    "mobilevitv3_xs": 2_490_360,
    "mobilevitv3_s": 5_763_912,
    "mobilevitv3_050": 1_429_985,
    "mobilevitv3_075": 2_999_641,
    "mobilevitv3_100": 5_139_409,
}

_TOP1 = {  # ImageNet-1k top-1 of the released weights (the v3 paper / its README)
    "mobilevitv3_xxs": 70.98,
    "mobilevitv3_xs": 76.7,
    "mobilevitv3_s": 79.3,
    "mobilevitv3_050": 72.33,
    "mobilevitv3_075": 76.55,
    "mobilevitv3_100": 78.64,
}


for _name, _cfg in CONFIGS_V3.items():
    register_builder(
        _name,
        partial(build_mobilevit, _cfg),
        _PARAMS[_name],
        f"MobileViTv3-{_name.split('_')[1].upper()} (v3 block on v1): {_PARAMS[_name]:,} parameters, "
        f"{_TOP1[_name]}% ImageNet top-1 (v3 paper).",
    )

for _name, _cfg2 in CONFIGS_V3_V2.items():
    register_builder(
        _name,
        partial(build_mobilevitv2, _cfg2),
        _PARAMS[_name],
        f"MobileViTv3-{_cfg2.width_multiplier} (v3 block on v2): {_PARAMS[_name]:,} parameters, "
        f"{_TOP1[_name]}% ImageNet top-1 (v3 paper).",
    )
