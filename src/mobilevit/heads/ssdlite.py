"""SSDLite on a MobileViT backbone (Section 4.2.1 of the paper; Liu et al. 2016 for SSD,
Sandler et al. 2018 for the separable "lite" heads).

Feature maps at output strides 16, 32, 64, 128, 256 and a global-pool level: the backbone's L4
and L5 outputs (its 1x1 expansion and classifier are not part of the detector), three
separable stride-2 extra layers, then global average pooling + a 1x1 conv with ReLU. Each level
has a head: a 1x1 conv-BN-ReLU projection (where the channel count changes), then a separable
3x3 conv (depthwise conv + BN without activation, then a 1x1 conv with bias) that predicts, for
every anchor, 4 box offsets and ``num_classes`` logits in one tensor (anchor-major channels:
``a * (4 + K) + k``, boxes first), as ml-cvnets does. The pooled level uses a plain 1x1 conv.

Everything around the network is torchvision's: `SSD`
(input resizing and normalisation, IoU matching with the best-anchor rule, box coding with
variances 0.1 / 0.2, Smooth-L1 + cross-entropy with 3:1 hard-negative mining, score threshold,
per-class top-k, ``batched_nms``, boxes mapped back to the input image), and
`DefaultBoxGenerator` for the anchors. Those
are the paper's settings; the anchors match ml-cvnets' exactly (tested against its fixtures).

Why not torchvision's ``SSDLiteHead``: it gives classification and regression separate
depthwise convs (with ReLU6), which changes the parameter count and cannot hold ml-cvnets'
weights. The head here returns the dict torchvision's ``SSD`` expects, so nothing else changes.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.ssd import SSD

from ..models.backbone import BackboneBase
from ..models.config import MobileViTConfig
from ..models.layers import ConvNormAct
from ..models.mobilevit import MOBILEVIT_S, MOBILEVIT_XS, MOBILEVIT_XXS, build_mobilevit
from ..models.mobilevitv2 import CONFIGS_V2, WIDTHS, MobileViTv2Config, build_mobilevitv2
from ..models.mobilevitv3 import CONFIGS_V3, CONFIGS_V3_V2
from ..models.registry import register_builder, register_model


@dataclass(frozen=True)
class SSDLiteConfig:
    """The detector around the backbone; defaults are ml-cvnets' COCO 320x320 settings."""

    image_size: tuple[int, int] = (320, 320)  # (height, width) the model resizes every input to
    extra_channels: tuple[int, ...] = (256, 128, 128)  # stride-2 separable levels after L5
    pool_channels: int = 64  # the global-pool level
    proj_channels: tuple[int, ...] = (512, 256, 256, 128, 128, 64)  # per level, before the predictor
    aspect_ratios: tuple[tuple[int, ...], ...] = ((2, 3), (2, 3), (2, 3), (2, 3), (2, 3), (2,))
    min_scale: float = 0.1
    max_scale: float = 1.05
    iou_threshold: float = 0.5  # anchor matching
    positive_fraction: float = 0.25  # 3 negatives per positive in hard-negative mining
    score_threshold: float = 0.01
    nms_threshold: float = 0.5
    detections_per_image: int = 200
    topk_candidates: int = 400  # per class, before NMS
    # ml-cvnets feeds [0, 1] pixels without normalisation; converted weights expect exactly that
    image_mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    image_std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        levels = 2 + len(self.extra_channels) + 1
        if len(self.proj_channels) != levels or len(self.aspect_ratios) != levels:
            raise ValueError(
                f"SSDLite has {levels} levels (L4, L5, {len(self.extra_channels)} extra, pool): "
                f"proj_channels ({len(self.proj_channels)}) and aspect_ratios ({len(self.aspect_ratios)}) "
                "need one entry per level"
            )
        if not 0 < self.min_scale < self.max_scale:
            raise ValueError(f"need 0 < min_scale < max_scale, got {self.min_scale}, {self.max_scale}")

    @property
    def num_levels(self) -> int:
        return len(self.proj_channels)

    def replace(self, **changes: Any) -> SSDLiteConfig:
        """A copy with ``changes`` applied; an unknown field name is a `ValueError` listing the known ones."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown SSDLite setting(s) {unknown}; accepted: {sorted(known)}")
        return replace(self, **changes)


class SeparableConv(nn.Sequential):
    """Depthwise kxk conv + BN (no activation), then a pointwise 1x1 conv.

    ``pointwise="conv_bn_relu"`` for the extra feature layers, ``"conv_bias"`` for predictors.
    """

    def __init__(
        self, in_channels: int, out_channels: int, stride: int = 1, pointwise: str = "conv_bn_relu"
    ) -> None:
        super().__init__()
        self.dw = ConvNormAct(in_channels, in_channels, 3, stride=stride, groups=in_channels, act=None)
        if pointwise == "conv_bn_relu":
            self.pw: nn.Module = ConvNormAct(in_channels, out_channels, 1, act=nn.ReLU)
        elif pointwise == "conv_bias":
            self.pw = nn.Conv2d(in_channels, out_channels, 1, bias=True)
        else:
            raise ValueError(f"pointwise must be conv_bn_relu or conv_bias, got {pointwise!r}")


class SSDLiteFeatures(nn.Module):
    """The multi-scale feature pyramid: backbone L4, L5, extra separable levels, global pool.

    ``forward`` returns an ordered dict of the levels' maps (what torchvision's ``SSD`` takes).
    """

    def __init__(
        self, body: BackboneBase, extra_channels: Sequence[int] = (256, 128, 128), pool_channels: int = 64
    ):
        super().__init__()
        if not body.features_only:
            raise ValueError("SSDLiteFeatures needs a features_only MobileViT backbone")
        self.body = body
        info = body.feature_info
        self.stage_indices = (len(info) - 2, len(info) - 1)  # L4, L5
        channels = [info[i].channels for i in self.stage_indices]
        strides = [info[i].reduction for i in self.stage_indices]
        extra, c = [], channels[-1]
        for out in extra_channels:
            extra.append(SeparableConv(c, out, stride=2))
            channels.append(out)
            strides.append(strides[-1] * 2)
            c = out
        self.extra = nn.ModuleList(extra)
        # the global level: pool, then a 1x1 conv with ReLU and neither norm nor bias (ml-cvnets)
        self.pool = ConvNormAct(c, pool_channels, 1, norm=False, act=nn.ReLU, bias=False)
        self.out_channels = [*channels, pool_channels]
        self.out_strides = [*strides, -1]  # -1: the image-level (global pool) map

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        maps = list(self.body.forward_stages(x, list(self.stage_indices)))
        y = maps[-1]
        for layer in self.extra:
            y = layer(y)
            maps.append(y)
        maps.append(self.pool(F.adaptive_avg_pool2d(y, 1)))  # [B, pool_channels, 1, 1]
        return OrderedDict((str(i), m) for i, m in enumerate(maps))


class SSDLiteLevelHead(nn.Module):
    """One level's predictor: optional 1x1 projection, then box offsets + class logits per anchor."""

    def __init__(
        self, in_channels: int, proj_channels: int, num_anchors: int, num_outputs: int, kernel_size: int
    ):
        super().__init__()
        # as in ml-cvnets: project only where the width changes and the predictor is spatial
        if proj_channels != in_channels and kernel_size > 1:
            self.proj: nn.Module = ConvNormAct(in_channels, proj_channels, 1, act=nn.ReLU)
            in_channels = proj_channels
        else:
            self.proj = nn.Identity()
        out = num_anchors * num_outputs
        if kernel_size > 1:
            self.predict: nn.Module = SeparableConv(in_channels, out, pointwise="conv_bias")
        else:
            self.predict = nn.Conv2d(in_channels, out, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.predict(self.proj(x))


class SSDLiteHead(nn.Module):
    """Per-level predictors; returns ``{"bbox_regression": [B, A, 4], "cls_logits": [B, A, K]}``.

    Anchors are ordered level by level, then row (y), column (x), anchor, matching
    `DefaultBoxGenerator` and ml-cvnets.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        proj_channels: Sequence[int],
        num_anchors: Sequence[int],
        num_classes: int,
        kernel_sizes: Sequence[int],
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.levels = nn.ModuleList(
            SSDLiteLevelHead(c, p, a, 4 + num_classes, k)
            for c, p, a, k in zip(in_channels, proj_channels, num_anchors, kernel_sizes, strict=True)
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for level in self.levels:  # small predictions at the start, as in torchvision's SSDLite
            last = level.predict.pw if isinstance(level.predict, SeparableConv) else level.predict
            nn.init.normal_(last.weight, std=0.03)

    def forward(self, features: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        boxes, logits = [], []
        k = 4 + self.num_classes
        for level, x in zip(self.levels, features, strict=True):
            y = level(x)  # [B, A*(4+K), H, W], channel a*(4+K) + k
            b, _, h, w = y.shape
            y = y.permute(0, 2, 3, 1).reshape(b, -1, k)  # [B, H*W*A, 4+K]
            boxes.append(y[..., :4])
            logits.append(y[..., 4:])
        return {"bbox_regression": torch.cat(boxes, 1), "cls_logits": torch.cat(logits, 1)}


class SSDLite(SSD):
    """torchvision's SSD with MobileViT features and SSDLite heads.

    - ``model(images)`` in eval mode: a list of ``{"boxes" (xyxy, input pixels), "scores",
      "labels"}`` per image; images may be a list of ``[3, H, W]`` tensors of any size in [0, 1]
      (RGB), or a batched tensor.
    - ``model(images, targets)`` in train mode: ``{"bbox_regression", "classification"}`` losses.
    - `forward_raw`: the raw head outputs on an already resized batch (what export traces);
      `anchors` the matching anchors; `decode` turns raw outputs into detections.
    """

    classifier_keys: tuple[str, ...] = ()  # set per instance: the predictors' last convs

    def mobilevit_backbone(self) -> BackboneBase:
        """The MobileViT inside (where ``create_model(backbone_weights=...)`` loads)."""
        return self.backbone.body  # torchvision's SSD keeps the feature extractor as .backbone

    def __init__(self, features: SSDLiteFeatures, num_classes: int, config: SSDLiteConfig | None = None):
        cfg = config or SSDLiteConfig()
        if num_classes < 2:
            raise ValueError(f"num_classes counts the background and must be >= 2, got {num_classes}")
        if len(features.out_channels) != cfg.num_levels:
            raise ValueError(
                f"the feature extractor has {len(features.out_channels)} levels, the config {cfg.num_levels}"
            )
        n = cfg.num_levels
        scales = torch.linspace(cfg.min_scale, cfg.max_scale, n + 1).tolist()
        anchors = DefaultBoxGenerator([list(r) for r in cfg.aspect_ratios], scales=scales, clip=True)
        kernel_sizes = [1 if s == -1 else 3 for s in features.out_strides]
        head = SSDLiteHead(
            features.out_channels,
            cfg.proj_channels,
            anchors.num_anchors_per_location(),
            num_classes,
            kernel_sizes,
        )
        super().__init__(
            features,
            anchors,
            tuple(cfg.image_size),
            num_classes,
            image_mean=list(cfg.image_mean),
            image_std=list(cfg.image_std),
            head=head,
            score_thresh=cfg.score_threshold,
            nms_thresh=cfg.nms_threshold,
            detections_per_img=cfg.detections_per_image,
            iou_thresh=cfg.iou_threshold,
            topk_candidates=cfg.topk_candidates,
            positive_fraction=cfg.positive_fraction,
        )
        self.ssd_config = cfg
        self.config = features.body.config
        self._grid_sizes: dict[tuple[int, int], list[torch.Size]] = {}
        self.num_classes = num_classes
        self.pretrained_cfg: dict | None = None
        # only the last conv of each predictor depends on the class count
        self.classifier_keys = tuple(
            f"head.levels.{i}.predict." + ("pw." if isinstance(level.predict, SeparableConv) else "")
            for i, level in enumerate(head.levels)
        )

    @property
    def name(self) -> str:
        return f"ssdlite_{self.config.name}"

    def forward_raw(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw outputs for a batch already at ``image_size`` and normalised with the model's
        mean / std (identity by default): ``(cls_logits [B, A, K], bbox_regression [B, A, 4])``.

        Index 0 of the logits is the background; boxes are offsets against `anchors`.
        """
        out = self.head(list(self.backbone(x).values()))
        return out["cls_logits"], out["bbox_regression"]

    @torch.no_grad()
    def anchors(self, image_size: tuple[int, int] | None = None) -> torch.Tensor:
        """Anchors for ``image_size`` (default: the model's) as ``[A, 4]`` (cx, cy, w, h), normalised."""
        h, w = image_size or self.ssd_config.image_size
        if (h, w) not in self._grid_sizes:  # the feature-map sizes depend only on the input size
            probe = torch.zeros(1, 3, h, w, device=next(self.parameters()).device)
            was_training = self.training
            self.eval()
            try:
                self._grid_sizes[(h, w)] = [m.shape[-2:] for m in self.backbone(probe).values()]
            finally:
                self.train(was_training)
        return self.anchor_generator._grid_default_boxes(self._grid_sizes[(h, w)], [h, w])

    def decode(
        self,
        cls_logits: torch.Tensor,
        bbox_regression: torch.Tensor,
        image_size: tuple[int, int] | None = None,
    ) -> list[dict[str, torch.Tensor]]:
        """Raw outputs (e.g. from an exported model) -> per-image detections in ``image_size`` pixels:
        softmax, score threshold, per-class top-k, NMS, as in ``forward``.

        Args:
            cls_logits: class logits ``[B, A, K]`` as `forward_raw` returns them (index 0: background).
            bbox_regression: box offsets ``[B, A, 4]`` against `anchors`, as `forward_raw` returns them.
            image_size: ``(height, width)`` the raw outputs were computed at; default the model's.

        Returns:
            One ``{"boxes" (xyxy, ``image_size`` pixels), "scores", "labels"}`` dict per image.
        """
        h, w = image_size or self.ssd_config.image_size
        cxcywh = self.anchors((h, w)).to(bbox_regression.device)
        scale = torch.tensor([w, h, w, h], dtype=cxcywh.dtype, device=cxcywh.device)
        xyxy = torch.cat([cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, :2] + cxcywh[:, 2:] / 2], 1) * scale
        anchors = [xyxy] * cls_logits.shape[0]
        outputs = {"cls_logits": cls_logits, "bbox_regression": bbox_regression}
        return self.postprocess_detections(outputs, anchors, [(h, w)] * cls_logits.shape[0])


class SSDLiteForExport(nn.Module):
    """The traceable core of an `SSDLite` for export: ``image [B, 3, H, W]`` (RGB in
    [0, 1], already at the model's ``image_size``) -> ``(scores [B, A, K], boxes [B, A, 4])``.

    Scores are softmax probabilities (index 0: background); boxes are decoded against the
    anchors (baked in as a constant) to normalised (x0, y0, x1, y1). Score threshold and NMS
    are left to the runtime (e.g. onnxruntime's or Core ML's NMS), as in the usual mobile SSD
    deployments; `SSDLite.forward` does the same steps in eager PyTorch.
    """

    def __init__(self, model: SSDLite) -> None:
        super().__init__()
        self.model = model
        h, w = model.ssd_config.image_size
        self.register_buffer("anchors", model.anchors((h, w)))  # [A, 4] (cx, cy, w, h), normalised
        self.register_buffer("mean", torch.tensor(model.ssd_config.image_mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(model.ssd_config.image_std).view(1, 3, 1, 1))
        wx, wy, ww, wh = model.box_coder.weights
        self.register_buffer("inv_weights", torch.tensor([1 / wx, 1 / wy, 1 / ww, 1 / wh]))
        self.clip = float(model.box_coder.bbox_xform_clip)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, offsets = self.model.forward_raw((image - self.mean) / self.std)
        d = offsets * self.inv_weights  # [B, A, 4]: (dx, dy, dw, dh) in anchor units
        a = self.anchors
        centre = a[:, :2] + d[..., :2] * a[:, 2:]  # [B, A, 2]
        size = a[:, 2:] * torch.exp(d[..., 2:].clamp(max=self.clip))  # [B, A, 2]
        boxes = torch.cat([centre - size / 2, centre + size / 2], dim=-1)  # [B, A, 4]
        return logits.softmax(dim=-1), boxes


# ------------------------------------------------------------------ builders and registrations
def build_ssdlite(
    config: MobileViTConfig,
    num_classes: int = 81,
    ssd: dict[str, Any] | None = None,
    **overrides: Any,
) -> SSDLite:
    """SSDLite with a MobileViT backbone (output stride 32); ``num_classes`` counts the background.

    ``create_model(..., backbone_weights=...)`` loads a classifier's weights into the backbone.

    Args:
        config: the MobileViT (v1 frame) variant's config.
        num_classes: detection classes, background included (81 for COCO).
        ssd: `SSDLiteConfig` fields to change (e.g. ``{"image_size": (256, 256)}``); ``None``: defaults.
        **overrides: backbone config fields to change, passed to `build_mobilevit`.

    Returns:
        The detector.
    """
    backbone = build_mobilevit(config, features_only=True, **overrides)
    cfg = SSDLiteConfig().replace(**ssd) if ssd else SSDLiteConfig()
    features = SSDLiteFeatures(backbone, cfg.extra_channels, cfg.pool_channels)
    return SSDLite(features, num_classes=num_classes, config=cfg)


@register_model("ssdlite_mobilevit_xxs", params=1_755_050)
def ssdlite_mobilevit_xxs(**kwargs: Any) -> SSDLite:
    """SSDLite-MobileViT-XXS: 1,755,050 parameters at 81 classes, 19.9 COCO mAP (ml-cvnets)."""
    return build_ssdlite(MOBILEVIT_XXS, **kwargs)


@register_model("ssdlite_mobilevit_xs", params=2_742_042)
def ssdlite_mobilevit_xs(**kwargs: Any) -> SSDLite:
    """SSDLite-MobileViT-XS: 2.7M parameters at 81 classes, 24.8 COCO mAP (paper)."""
    return build_ssdlite(MOBILEVIT_XS, **kwargs)


@register_model("ssdlite_mobilevit_s", params=5_738_826)
def ssdlite_mobilevit_s(**kwargs: Any) -> SSDLite:
    """SSDLite-MobileViT-S: 5.7M parameters at 81 classes, 27.7 COCO mAP (paper)."""
    return build_ssdlite(MOBILEVIT_S, **kwargs)


# --------------------------------------------------------------------------- MobileViT v2
def build_ssdlite_v2(
    config: MobileViTv2Config, num_classes: int = 81, ssd: dict[str, Any] | None = None, **overrides: Any
) -> SSDLite:
    """SSDLite on a MobileViT v2 backbone: the same pyramid and heads as v1 (ml-cvnets' v2 COCO
    config), on L4 / L5 of the v2 widths.

    Args:
        config: the MobileViT v2 (or v3-on-v2) variant's config.
        num_classes: detection classes, background included (81 for COCO).
        ssd: `SSDLiteConfig` fields to change (e.g. ``{"image_size": (256, 256)}``); ``None``: defaults.
        **overrides: backbone config fields to change, passed to `build_mobilevitv2`.

    Returns:
        The detector.
    """
    backbone = build_mobilevitv2(config, features_only=True, **overrides)
    cfg = SSDLiteConfig().replace(**ssd) if ssd else SSDLiteConfig()
    features = SSDLiteFeatures(backbone, cfg.extra_channels, cfg.pool_channels)
    return SSDLite(features, num_classes=num_classes, config=cfg)


# at 81 classes; 050 and 100 are ml-cvnets' own counts (the v2 fixtures' manifests), the other widths
# are what this build gives (no official manifest to check them against)
_V2_PARAMS = {
    "050": 2_035_395,
    "075": 3_584_955,
    "100": 5_608_883,
    "125": 8_173_227,
    "150": 11_277_987,
    "175": 14_923_163,
    "200": 19_108_755,
}


for _w in WIDTHS:
    register_builder(
        f"ssdlite_mobilevitv2_{_w}",
        partial(build_ssdlite_v2, CONFIGS_V2[f"mobilevitv2_{_w}"]),
        _V2_PARAMS[_w],
        f"SSDLite-MobileViTv2 at width {WIDTHS[_w]}: {_V2_PARAMS[_w]:,} parameters at 81 classes.",
    )


# --------------------------------------------------------------------------- MobileViT v3
# at 81 classes: what these builds give (v3 on v1 through v1's builder, v3 on v2 through v2's)
_V3_PARAMS = {
    "mobilevitv3_xxs": 1_533_450,
    "mobilevitv3_xs": 2_666_938,
    "mobilevitv3_s": 5_547_882,
    "mobilevitv3_050": 2_094_787,
    "mobilevitv3_075": 3_718_587,
    "mobilevitv3_100": 5_846_451,
}
_V3_COCO = {  # COCO mAP (the v3 paper's README)
    "mobilevitv3_xxs": 19.3,
    "mobilevitv3_xs": 25.6,
    "mobilevitv3_s": 27.3,
    "mobilevitv3_050": 21.8,
    "mobilevitv3_075": 25.0,
    "mobilevitv3_100": 27.0,
}

for _name, _build in (
    *((n, partial(build_ssdlite, c)) for n, c in CONFIGS_V3.items()),
    *((n, partial(build_ssdlite_v2, c)) for n, c in CONFIGS_V3_V2.items()),
):
    register_builder(
        f"ssdlite_{_name}",
        _build,
        _V3_PARAMS[_name],
        f"SSDLite-{_name}: {_V3_PARAMS[_name]:,} parameters at 81 classes, {_V3_COCO[_name]} COCO mAP (v3 paper).",
    )
