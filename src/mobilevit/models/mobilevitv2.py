"""MobileViT v2 (Mehta & Rastegari, "Separable Self-attention for Mobile Vision Transformers",
TMLR 2023): the separable self-attention block (Section 3) in the v1 network's frame, at the seven
released widths 0.5 ... 2.0 (Section 4, Table 7), written to the code that trained the weights
(ml-cvnets v0.2; timm agrees with it).

stem (3x3 s2) -> L1 MV2 -> L2 2x MV2 -> L3..L5 (MV2 s2 + MobileViTv2 block with 2 / 4 / 3
attention layers) -> global pool -> linear. No 1x1 expansion conv and no classifier dropout.
The block: resize an odd-sized map up to even (bilinear, ``align_corners=True``, kept), depthwise
3x3 (BN, SiLU), 1x1 to d, unfold to [B, d, P, N], pre-norm layers of separable attention and a
1x1-conv FFN with GroupNorm(1) over [B, d, P, N], a final GroupNorm, fold, 1x1 to C (BN, no
activation). No skip connection and no fusion conv. The backbone contract is v1's
(``forward_stages``, ``feature_info``, ``output_stride`` 16 / 8 by dilation), so the heads take
it as they are.

MobileViT v3 on this frame (``fusion="v3"``, Wadekar & Chaurasia 2022, Section 3): the 1x1
projection takes the folded global features concatenated with the local branch's (2d -> C), and
the block's (resized) input is added to its output.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import BackboneBase, ClassifierHead, FeatureInfo
from .layers import ConvNormAct, InvertedResidual, make_divisible
from .patch_layouts import PatchLayout, fold_v2_nhwc, unfold_v2_nhwc
from .registry import register_builder

WIDTHS = {"050": 0.5, "075": 0.75, "100": 1.0, "125": 1.25, "150": 1.5, "175": 1.75, "200": 2.0}


@dataclass(frozen=True)
class MobileViTv2Config:
    """A MobileViT v2 classifier / backbone; every knob is a field (``replace`` makes a variant)."""

    name: str = "mobilevitv2_100"
    width_multiplier: float = 1.0
    num_classes: int = 1000
    in_chans: int = 3
    depths: tuple[int, int, int] = (2, 4, 3)  # attention layers in L3 / L4 / L5
    attn_dims: tuple[int, int, int] | None = None  # None: make_divisible((128, 192, 256) * width, 8)
    ffn_ratio: float = 2.0  # ffn = int(ffn_ratio * d // 16 * 16): exactly 2d for the released widths
    patch_size: tuple[int, int] = (2, 2)
    dropout: float = 0.0  # after the attention and after the FFN
    attn_dropout: float = 0.0  # on the softmaxed scores
    ffn_dropout: float = 0.0  # inside the FFN, after the activation
    classifier_dropout: float = 0.0
    norm: str = (
        "group_norm"  # the attention stack's norm: "group_norm" (GroupNorm(1), as trained) or "batch_norm"
    )
    norm_eps: float = 1e-5
    output_stride: int = 32  # 32 (classification), 16 or 8 (dense prediction: dilated L5 / L4-L5)
    fusion: str = "v2"  # "v2": project the global features alone; "v3": [global, local] + residual

    def __post_init__(self) -> None:
        for name in ("depths", "patch_size"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.attn_dims is not None:
            object.__setattr__(self, "attn_dims", tuple(self.attn_dims))
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid field."""
        if self.width_multiplier <= 0:
            raise ValueError(f"width_multiplier must be positive, got {self.width_multiplier}")
        if len(self.depths) != 3 or min(self.depths) < 1:
            raise ValueError(f"depths must be three ints >= 1 (L3, L4, L5), got {self.depths}")
        if self.attn_dims is not None and (len(self.attn_dims) != 3 or min(self.attn_dims) < 1):
            raise ValueError(f"attn_dims must be three positive ints, got {self.attn_dims}")
        if len(self.patch_size) != 2 or min(self.patch_size) < 1:
            raise ValueError(f"patch_size must be two positive ints, got {self.patch_size}")
        if self.ffn_ratio <= 0:
            raise ValueError(f"ffn_ratio must be positive, got {self.ffn_ratio}")
        for name in ("dropout", "attn_dropout", "ffn_dropout", "classifier_dropout"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.norm not in ("group_norm", "batch_norm"):
            raise ValueError(f"norm must be group_norm or batch_norm, got {self.norm!r}")
        if self.output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {self.output_stride}")
        if self.fusion not in ("v2", "v3"):
            raise ValueError(f"fusion must be 'v2' or 'v3', got {self.fusion!r}")
        if self.num_classes < 0 or self.in_chans < 1:
            raise ValueError("num_classes must be >= 0 and in_chans >= 1")

    def replace(self, **changes: Any) -> MobileViTv2Config:
        """A validated copy with ``changes`` (config fields) applied; an unknown field is a ``TypeError``."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise TypeError(
                f"unknown MobileViTv2Config field(s) {unknown}; fields: {', '.join(sorted(known))}"
            )
        return dataclasses.replace(self, **changes)

    @property
    def channels(self) -> tuple[int, ...]:
        """Stem, L1 ... L5 output channels (ml-cvnets' rounding; timm's agrees at the 7 widths)."""
        w = self.width_multiplier
        stem = make_divisible(min(max(32 * w, 16), 64), 8, 16)
        return (stem, make_divisible(64 * w, 16), *(make_divisible(c * w, 8) for c in (128, 256, 384, 512)))

    @property
    def dims(self) -> tuple[int, int, int]:
        if self.attn_dims is not None:
            return self.attn_dims  # type: ignore[return-value]
        w = self.width_multiplier
        return tuple(make_divisible(d * w, 8) for d in (128, 192, 256))  # type: ignore[return-value]

    def ffn_dim(self, d: int) -> int:
        """The FFN hidden width of a transformer of width ``d`` (``ffn_ratio * d``, a multiple of 16)."""
        return int(self.ffn_ratio * d // 16 * 16)


def attn_norm(kind: str, dim: int, eps: float) -> nn.Module:
    """The attention stack's norm: GroupNorm(1) over [B, d, P, N] (ml-cvnets' "layer_norm_2d").

    Args:
        kind: ``group_norm`` (GroupNorm(1), as trained) or ``batch_norm``.
        dim: the channels d.
        eps: the norm's epsilon.

    Returns:
        The norm module.
    """
    return nn.GroupNorm(1, dim, eps=eps) if kind == "group_norm" else nn.BatchNorm2d(dim, eps=eps)


class LinearSelfAttention(nn.Module):
    """Separable self-attention (Section 3.2): one context vector per pixel position, O(N).

    qkv is one 1x1 conv d -> 1 + 2d split [1 | d | d]: the query's score per patch (softmax over
    the N patches), the keys (summed under those scores into a context vector) and the values
    (ReLU, then scaled by the context). No heads, no scaling.
    """

    def __init__(self, dim: int, attn_dropout: float = 0.0) -> None:
        super().__init__()
        self.dim = dim
        self.qkv_proj = nn.Conv2d(dim, 1 + 2 * dim, 1)
        self.attn_drop = nn.Dropout(attn_dropout)
        self.out_proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B, d, P, N]
        q, k, v = self.qkv_proj(x).split((1, self.dim, self.dim), dim=1)  # [B,1,P,N], [B,d,P,N] x2
        scores = self.attn_drop(q.softmax(dim=-1))  # over the N patches
        context = (k * scores).sum(dim=-1, keepdim=True)  # [B, d, P, 1]
        return self.out_proj(F.relu(v) * context)  # [B, d, P, N]


class LinearAttnFFN(nn.Module):
    """Pre-norm layer: x + attn(norm(x)), then x + ffn(norm(x)), the FFN as 1x1 convs."""

    def __init__(
        self,
        dim: int,
        ffn_dim: int,
        dropout: float,
        attn_dropout: float,
        ffn_dropout: float,
        norm: str,
        eps: float,
    ) -> None:
        super().__init__()
        self.norm1 = attn_norm(norm, dim, eps)
        self.attn = LinearSelfAttention(dim, attn_dropout)
        self.drop1 = nn.Dropout(dropout)
        self.norm2 = attn_norm(norm, dim, eps)
        self.mlp = nn.Sequential()
        self.mlp.fc1 = nn.Conv2d(dim, ffn_dim, 1)
        self.mlp.act = nn.SiLU()
        self.mlp.drop = nn.Dropout(ffn_dropout)
        self.mlp.fc2 = nn.Conv2d(ffn_dim, dim, 1)
        self.drop2 = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop1(self.attn(self.norm1(x)))
        return x + self.drop2(self.mlp(self.norm2(x)))


def unfold_patches_v2(x: torch.Tensor, ph: int, pw: int) -> torch.Tensor:
    """[B, d, H, W] -> [B, d, P, N]: P = ph*pw pixel positions (row-major in the patch), N patches
    (row-major); what ``F.unfold(kernel=stride=patch)`` gives, as one reshape + permute.

    Args:
        x: the map ``[B, d, H, W]``, H and W multiples of the patch.
        ph: the patch height.
        pw: the patch width.

    Returns:
        ``[B, d, P, N]``.
    """
    b, d, h, w = x.shape
    nh, nw = h // ph, w // pw
    x = x.reshape(b, d, nh, ph, nw, pw).permute(0, 1, 3, 5, 2, 4)  # [B, d, ph, pw, nh, nw]
    return x.reshape(b, d, ph * pw, nh * nw)


def fold_patches_v2(x: torch.Tensor, ph: int, pw: int, nh: int, nw: int) -> torch.Tensor:
    """Inverse of `unfold_patches_v2`: [B, d, P, N] -> [B, d, nh*ph, nw*pw].

    Args:
        x: ``[B, d, P, N]``.
        ph: the patch height.
        pw: the patch width.
        nh: patches per column.
        nw: patches per row.

    Returns:
        The map ``[B, d, nh*ph, nw*pw]``.
    """
    b, d = x.shape[:2]
    x = x.reshape(b, d, ph, pw, nh, nw).permute(0, 1, 4, 2, 5, 3)  # [B, d, nh, ph, nw, pw]
    return x.reshape(b, d, nh * ph, nw * pw)


class PatchesV2(PatchLayout):
    """The v2 block's layouts (`PatchLayout`): tokens ``[B, d, P, N]``. v2 has no pixel-order form,
    so ``"pixels"`` (the ONNX graph's choice for v1) gives the reference."""

    def with_layout(self, layout: str) -> PatchLayout:
        """The v2 module for ``layout``: `PatchesV2NHWC` for ``"nhwc"``, else `PatchesV2NCHW`."""
        return PatchesV2NHWC() if layout == "nhwc" else PatchesV2NCHW()


class PatchesV2NCHW(PatchesV2):
    """The reference unfold / fold, one reshape + permute each way (the ONNX graph's: the fastest in
    onnxruntime, docs/patch_layouts.md)."""

    layout = "nchw"

    def forward(self, y: torch.Tensor, layers: nn.Module, norm: nn.Module, ph: int, pw: int) -> torch.Tensor:
        h, w = y.shape[-2:]
        tokens = norm(layers(unfold_patches_v2(y, ph, pw)))  # [B, d, P, N]
        return fold_patches_v2(tokens, ph, pw, h // ph, w // pw)  # [B, d, H, W]


class PatchesV2NHWC(PatchesV2):
    """Unfold / fold in one copy each way through the [B, H, W, d] view (the eager default and the
    XNNPACK graphs': the fastest in eager PyTorch, docs/patch_layouts.md)."""

    layout = "nhwc"

    def forward(self, y: torch.Tensor, layers: nn.Module, norm: nn.Module, ph: int, pw: int) -> torch.Tensor:
        h, w = y.shape[-2:]
        tokens = norm(layers(unfold_v2_nhwc(y, ph, pw)))  # [B, d, P, N], a view of [B, P, N, d]
        return fold_v2_nhwc(tokens, ph, pw, h // ph, w // pw)  # [B, d, H, W], channels-last view


class MobileViTv2Block(nn.Module):
    """Resize to the patch grid -> local dw 3x3 + 1x1 -> unfold -> separable attention layers ->
    norm -> fold -> 1x1 projection (BN, no activation); v3: the projection over [global, local],
    plus the resized input."""

    def __init__(
        self, channels: int, dim: int, depth: int, config: MobileViTv2Config, dilation: int = 1
    ) -> None:
        super().__init__()
        c = config
        self.patch_size = c.patch_size
        self.conv_kxk = ConvNormAct(channels, channels, 3, dilation=dilation, groups=channels)
        self.conv_1x1 = nn.Conv2d(channels, dim, 1, bias=False)
        self.transformer = nn.Sequential(
            *(
                LinearAttnFFN(
                    dim, c.ffn_dim(dim), c.dropout, c.attn_dropout, c.ffn_dropout, c.norm, c.norm_eps
                )
                for _ in range(depth)
            )
        )
        self.norm = attn_norm(c.norm, dim, c.norm_eps)
        self.v3 = c.fusion == "v3"
        self.conv_proj = ConvNormAct(2 * dim if self.v3 else dim, channels, 1, act=None)
        # how unfold / fold move memory (set_patch_layout swaps it): stateless, the outputs are the same
        self.patches: PatchLayout = PatchesV2NHWC()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ph, pw = self.patch_size
        h, w = x.shape[-2:]
        new_h, new_w = math.ceil(h / ph) * ph, math.ceil(w / pw) * pw
        if (new_h, new_w) != (h, w):  # as the trained code does: up to the grid, and kept there
            x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=True)
        local = self.conv_1x1(self.conv_kxk(x))  # [B, d, H, W]
        y = self.patches(local, self.transformer, self.norm, ph, pw)  # across patches: [B, d, H, W]
        if not self.v3:
            return self.conv_proj(y)
        return self.conv_proj(torch.cat((y, local), dim=1)) + x  # [B, 2d, H, W] -> [B, C, H, W]


class MobileViTv2(BackboneBase):
    """MobileViT v2 classifier and backbone. Takes RGB images in [0, 1] by default, [B, C, H, W]."""

    def __init__(self, config: MobileViTv2Config, features_only: bool = False) -> None:
        super().__init__()
        self.config = config
        self.features_only = features_only
        ch, dims = config.channels, config.dims
        self.stem = ConvNormAct(config.in_chans, ch[0], 3, stride=2)
        first_dilated = {32: 5, 16: 4, 8: 3}[config.output_stride]
        dilation, reduction = 1, 2
        stages: list[nn.Sequential] = []
        info: list[FeatureInfo] = []
        for i in range(5):
            stride = 1 if i == 0 else 2
            prev_dilation = dilation
            if stride == 2 and i >= first_dilated:
                dilation, stride = dilation * 2, 1
            reduction *= stride
            if i < 2:  # L1: one MV2; L2: two, the first strided
                blocks: list[nn.Module] = [
                    InvertedResidual(ch[i] if j == 0 else ch[i + 1], ch[i + 1], stride if j == 0 else 1, 2.0)
                    for j in range(i + 1)
                ]
            else:
                blocks = [
                    InvertedResidual(ch[i], ch[i + 1], stride, 2.0, dilation=prev_dilation),
                    MobileViTv2Block(ch[i + 1], dims[i - 2], config.depths[i - 2], config, dilation),
                ]
            stages.append(nn.Sequential(*blocks))
            info.append(FeatureInfo(i, ch[i + 1], reduction, f"stages.{i}"))
        self.stages = nn.ModuleList(stages)
        self.feature_info = tuple(info)
        self.num_features = ch[5]
        self.num_classes = 0 if features_only else config.num_classes
        if not features_only:
            self.head = ClassifierHead(ch[5], config.num_classes, config.classifier_dropout)
        self.init_weights()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-pool features: the L5 output."""
        return self.forward_stages(x, [len(self.stages) - 1])[0]


def config_for(width: str) -> MobileViTv2Config:
    """The config of v2 at the width named ``width`` (``"050"`` .. ``"200"``)."""
    return MobileViTv2Config(name=f"mobilevitv2_{width}", width_multiplier=WIDTHS[width])


CONFIGS_V2: dict[str, MobileViTv2Config] = {f"mobilevitv2_{w}": config_for(w) for w in WIDTHS}


def build_mobilevitv2(
    config: MobileViTv2Config, features_only: bool = False, **overrides: Any
) -> MobileViTv2:
    """A `MobileViTv2` of ``config`` with ``overrides`` (config fields) applied.

    Args:
        config: the variant's config.
        features_only: the stage-level backbone the heads build on (no expansion conv, no head);
            for timm's list of maps use ``create_model(..., features_only=True)``.
        **overrides: config fields to change, e.g. ``num_classes=10`` or ``output_stride=16``.

    Returns:
        The network.
    """
    return MobileViTv2(config.replace(**overrides) if overrides else config, features_only=features_only)


_PARAMS = {
    "050": 1_370_593,
    "075": 2_866_009,
    "100": 4_901_841,
    "125": 7_478_089,
    "150": 10_594_753,
    "175": 14_251_833,
    "200": 18_449_329,
}


for _w in WIDTHS:
    register_builder(
        f"mobilevitv2_{_w}",
        partial(build_mobilevitv2, CONFIGS_V2[f"mobilevitv2_{_w}"]),
        _PARAMS[_w],
        f"MobileViT v2 at width {WIDTHS[_w]}: {_PARAMS[_w]:,} parameters at 1000 classes.",
    )
