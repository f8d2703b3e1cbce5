"""DeepLabv3 on a MobileViT backbone (Section 4.2.2 of the paper; Chen et al. 2017 for DeepLabv3).

The backbone runs at output stride 16 (the L5 MV2 at stride 1, see ``backbone.py``). Its L5
output feeds ASPP: a 1x1 conv, three 3x3 convs at rates 6 / 12 / 18 and image pooling, each
to 256 channels with BN + ReLU, concatenated in that order and projected 1280 -> 256, then
dropout; then Dropout2d and a 1x1 classifier with bias. ``forward`` returns logits upsampled
(bilinear) to the input size; ``forward_lowres`` the stride-16 logits (what transformers returns).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..models.backbone import BackboneBase
from ..models.config import MobileViTConfig
from ..models.layers import ConvNormAct
from ..models.mobilevit import MOBILEVIT_S, MOBILEVIT_XS, MOBILEVIT_XXS, build_mobilevit
from ..models.mobilevitv2 import CONFIGS_V2, WIDTHS, MobileViTv2Config, build_mobilevitv2
from ..models.mobilevitv3 import CONFIGS_V3, CONFIGS_V3_V2
from ..models.registry import register_builder, register_model


class ASPPPooling(nn.Module):
    """Image-level features: global average pool -> 1x1 conv-BN-ReLU -> bilinear resize back."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = ConvNormAct(in_channels, out_channels, 1, act=nn.ReLU)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        y = self.conv(F.adaptive_avg_pool2d(x, 1))  # [B, C, 1, 1]
        return F.interpolate(y, size=size, mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling with branch order [1x1, rates..., image pool]."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 256,
        rates: Sequence[int] = (6, 12, 18),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        branches: list[nn.Module] = [ConvNormAct(in_channels, out_channels, 1, act=nn.ReLU)]
        branches += [ConvNormAct(in_channels, out_channels, 3, dilation=r, act=nn.ReLU) for r in rates]
        branches.append(ASPPPooling(in_channels, out_channels))
        self.convs = nn.ModuleList(branches)
        self.project = ConvNormAct(out_channels * len(branches), out_channels, 1, act=nn.ReLU)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([branch(x) for branch in self.convs], dim=1)  # [B, 5*C, h, w]
        return self.dropout(self.project(y))


class DeepLabV3(nn.Module):
    """MobileViT backbone (output stride 16) + ASPP + classifier."""

    classifier_keys = ("classifier.",)  # what reset_classifier re-initialises

    def mobilevit_backbone(self) -> BackboneBase:
        """The MobileViT inside (where ``create_model(backbone_weights=...)`` loads)."""
        return self.backbone

    def __init__(
        self,
        backbone: BackboneBase,
        num_classes: int = 21,
        aspp_channels: int = 256,
        rates: Sequence[int] = (6, 12, 18),
        aspp_dropout: float = 0.1,
        classifier_dropout: float = 0.1,
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        if not backbone.features_only:
            raise ValueError("DeepLabV3 needs a features_only MobileViT backbone")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.backbone = backbone
        self.config = backbone.config
        self.num_classes = num_classes
        self.output_stride = backbone.feature_info[-1].reduction
        # the final bilinear upsampling: align_corners=False in ml-cvnets v0.1 (v1), True in v0.2 (v2)
        self.align_corners = align_corners
        self.aspp = ASPP(backbone.feature_info[-1].channels, aspp_channels, rates, aspp_dropout)
        self.dropout = nn.Dropout2d(classifier_dropout)
        self.classifier = nn.Conv2d(aspp_channels, num_classes, 1, bias=True)
        self.pretrained_cfg: dict | None = None
        for m in self.aspp.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        nn.init.normal_(self.classifier.weight, std=0.01)
        nn.init.zeros_(self.classifier.bias)

    @property
    def name(self) -> str:
        return f"deeplabv3_{self.config.name}"

    def forward_lowres(self, x: torch.Tensor) -> torch.Tensor:
        """Logits at the backbone's output stride: [B, K, ceil(H/16), ceil(W/16)]."""
        feats = self.backbone.forward_stages(x, [len(self.backbone.stages) - 1])[0]
        return self.classifier(self.dropout(self.aspp(feats)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits upsampled (bilinear, ``align_corners`` as the weights were trained) to the input size: [B, K, H, W]."""
        logits = self.forward_lowres(x)
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=self.align_corners)


# ------------------------------------------------------------------ builders and registrations
def build_deeplabv3(
    config: MobileViTConfig,
    num_classes: int = 21,
    output_stride: int = 16,
    aspp_channels: int = 256,
    **overrides: Any,
) -> DeepLabV3:
    """DeepLabv3 on a features-only MobileViT of ``config`` (``create_model(...,
    backbone_weights=...)`` loads a classifier's weights into that backbone).

    Args:
        config: the MobileViT (v1 frame) variant's config.
        num_classes: segmentation classes, background included (21 for PASCAL VOC).
        output_stride: the backbone's output stride (16: the L5 MV2 at stride 1).
        aspp_channels: channels of each ASPP branch and of its projection.
        **overrides: backbone config fields to change, passed to `build_mobilevit`.

    Returns:
        The model, ASPP at rates 6 / 12 / 18, final upsampling with ``align_corners=False``.
    """
    backbone = build_mobilevit(config, features_only=True, output_stride=output_stride, **overrides)
    return DeepLabV3(backbone, num_classes=num_classes, aspp_channels=aspp_channels)


@register_model("deeplabv3_mobilevit_xxs", params=1_854_853)
def deeplabv3_mobilevit_xxs(**kwargs: Any) -> DeepLabV3:
    """DeepLabv3-MobileViT-XXS: 1,854,853 parameters at 21 classes, 73.6 mIoU on VOC (paper)."""
    return build_deeplabv3(MOBILEVIT_XXS, **kwargs)


@register_model("deeplabv3_mobilevit_xs", params=2_944_069)
def deeplabv3_mobilevit_xs(**kwargs: Any) -> DeepLabV3:
    """DeepLabv3-MobileViT-XS: 2.94M parameters, 77.1 mIoU on VOC (paper)."""
    return build_deeplabv3(MOBILEVIT_XS, **kwargs)


@register_model("deeplabv3_mobilevit_s", params=6_357_941)
def deeplabv3_mobilevit_s(**kwargs: Any) -> DeepLabV3:
    """DeepLabv3-MobileViT-S: 6.36M parameters, 79.1 mIoU on VOC (paper)."""
    return build_deeplabv3(MOBILEVIT_S, **kwargs)


# --------------------------------------------------------------------------- MobileViT v2
def build_deeplabv3_v2(
    config: MobileViTv2Config,
    num_classes: int = 21,
    output_stride: int = 16,
    aspp_channels: int = 512,
    rates: Sequence[int] | None = None,
    **overrides: Any,
) -> DeepLabV3:
    """DeepLabv3 on a features-only MobileViT v2, with ml-cvnets' v2 settings: ASPP with 512
    channels at rates 6 / 12 / 18 for output stride 16 (PASCAL VOC), 12 / 24 / 36 for 8 (ADE20k).

    Args:
        config: the MobileViT v2 (or v3-on-v2) variant's config.
        num_classes: segmentation classes, background included (21 for PASCAL VOC).
        output_stride: the backbone's output stride, 16 or 8.
        aspp_channels: channels of each ASPP branch and of its projection.
        rates: the ASPP's dilation rates; ``None`` picks them from ``output_stride`` as above.
        **overrides: backbone config fields to change, passed to `build_mobilevitv2`.

    Returns:
        The model, final upsampling with ``align_corners=True`` (as ml-cvnets v0.2 trained it).
    """
    backbone = build_mobilevitv2(config, features_only=True, output_stride=output_stride, **overrides)
    if rates is None:
        rates = (6, 12, 18) if output_stride == 16 else (12, 24, 36)
    return DeepLabV3(
        backbone, num_classes=num_classes, aspp_channels=aspp_channels, rates=tuple(rates), align_corners=True
    )


_V2_PARAMS = {  # at 21 classes, as transformers counts them (ml-cvnets' checkpoints add an aux head)
    "050": 6_242_318,
    "075": 9_510_278,
    "100": 13_318_654,
    "125": 17_667_446,
    "150": 22_556_654,
    "175": 27_986_278,
    "200": 33_956_318,
}


for _w in WIDTHS:
    register_builder(
        f"deeplabv3_mobilevitv2_{_w}",
        partial(build_deeplabv3_v2, CONFIGS_V2[f"mobilevitv2_{_w}"]),
        _V2_PARAMS[_w],
        f"DeepLabv3-MobileViTv2 at width {WIDTHS[_w]}: {_V2_PARAMS[_w]:,} parameters at 21 classes.",
    )


# --------------------------------------------------------------------------- MobileViT v3
# the v3 backbones under the heads of the frame they are built on: v1's ASPP (256 channels) for
# v3 on v1, v2's (512) for v3 on v2; counts at 21 classes are what these builds give
_V3_PARAMS = {
    "mobilevitv3_xxs": 1_956_309,
    "mobilevitv3_xs": 3_269_669,
    "mobilevitv3_s": 7_205_621,
    "mobilevitv3_050": 6_301_710,
    "mobilevitv3_075": 9_643_910,
    "mobilevitv3_100": 13_556_222,
}
_V3_VOC = {  # PASCAL VOC mIoU (the v3 paper's README)
    "mobilevitv3_xxs": 74.04,
    "mobilevitv3_xs": 78.77,
    "mobilevitv3_s": 79.59,
    "mobilevitv3_050": 76.48,
    "mobilevitv3_100": 80.04,
}

for _name, _build in (
    *((n, partial(build_deeplabv3, c)) for n, c in CONFIGS_V3.items()),
    *((n, partial(build_deeplabv3_v2, c)) for n, c in CONFIGS_V3_V2.items()),
):
    _voc = f", {_V3_VOC[_name]} mIoU on VOC (v3 paper)" if _name in _V3_VOC else ""
    register_builder(
        f"deeplabv3_{_name}",
        _build,
        _V3_PARAMS[_name],
        f"DeepLabv3-{_name}: {_V3_PARAMS[_name]:,} parameters at 21 classes{_voc}.",
    )
