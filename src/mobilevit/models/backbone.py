"""The MobileViT v1 network (Section 3 and Figure 1b of Mehta & Rastegari, ICLR 2022).

stem (3x3 s2) -> L1 MV2 -> L2 3x MV2 -> L3..L5 (MV2 s2 + MobileViT block) -> 1x1 expansion
-> global pool -> dropout -> linear. The same module is the backbone of the detection and
segmentation heads: it exposes per-stage features (``forward_stages``), their channels and
strides (``feature_info``) and an ``output_stride`` of 16 or 8 obtained as ml-cvnets does it
(the down-sampling MV2 of L5, and of L4 for 8, runs at stride 1 with the previous dilation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .blocks import MobileViTBlock
from .config import MobileViTConfig
from .layers import ConvNormAct, InvertedResidual


@dataclass(frozen=True)
class FeatureInfo:
    """Channels and reduction (stride w.r.t. the input) of one stage output. Read as attributes
    or, as timm's dicts, by key (``info["num_chs"]``, ``["reduction"]``, ``["module"]``)."""

    stage: int  # 0-based index into ``stages`` (paper's L{stage+1})
    channels: int
    reduction: int
    module: str

    @property
    def num_chs(self) -> int:
        """timm's name for ``channels``."""
        return self.channels

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)


class BackboneBase(nn.Module):
    """What every MobileViT network shares (v1, v2): the backbone contract the heads rely on
    (``forward_stages``, ``feature_info``, ``output_stride`` by dilation, ``features_only``), the
    classifier head, input checks and initialisation. Subclasses build ``stem``, ``stages``,
    ``feature_info``, ``num_features`` and (unless ``features_only``) ``head`` in ``__init__``,
    and define ``forward_features``."""

    classifier_keys = ("head.fc.",)  # what reset_classifier re-initialises
    config: Any
    features_only: bool
    pretrained_cfg: dict | None = None  # input convention of loaded weights, if any

    # ------------------------------------------------------------------ init
    def init_weights(self) -> None:
        """Conv: kaiming normal (fan_out); linear: trunc normal std 0.02; norms: 1 / 0 (ml-cvnets)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d | nn.LayerNorm | nn.GroupNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    # --------------------------------------------------------------- forward
    def check_input(self, x: torch.Tensor) -> None:
        """Raise a clear error unless ``x`` is a ``[B, in_chans, H, W]`` tensor."""
        c = self.config.in_chans
        if not isinstance(x, torch.Tensor):
            raise TypeError(
                f"MobileViT expects a torch.Tensor of shape [B, {c}, H, W], got {type(x).__name__}"
            )
        if x.ndim != 4 or x.shape[1] != c:
            raise ValueError(
                f"MobileViT expects input of shape [B, {c}, H, W] (batch, channels, height, width), "
                f"got {list(x.shape)}"
            )

    def forward_stages(self, x: torch.Tensor, out_indices: Sequence[int] | None = None) -> list[torch.Tensor]:
        """Outputs of the stages L1..L5 (all five, or those in ``out_indices``, 0-based)."""
        self.check_input(x)
        wanted = range(len(self.stages)) if out_indices is None else out_indices
        for i in wanted:
            if not 0 <= i < len(self.stages):
                raise IndexError(f"stage index {i} out of range 0..{len(self.stages) - 1}")
        last = max(wanted)
        x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages[: last + 1]):
            x = stage(x)
            if i in wanted:
                outs.append(x)
        return outs

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool, dropout and the classifier on pre-pool features (``pre_logits``: the pooled features)."""
        if self.features_only:
            raise RuntimeError("this MobileViT was built with features_only=True and has no classifier head")
        return self.head(x, pre_logits=pre_logits)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The pre-pool features ``[B, C, H/s, W/s]`` (s: the output stride, 32 by default)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x)
        return x if self.features_only else self.forward_head(x)

    # ------------------------------------------------------------ utilities
    def reset_classifier(self, num_classes: int) -> None:
        """Replace the final linear layer with a freshly initialised one for ``num_classes``."""
        if self.features_only:
            raise RuntimeError("a features_only backbone has no classifier to reset")
        self.head = ClassifierHead(self.num_features, num_classes, self.config.classifier_dropout)
        self.num_classes = num_classes
        if self.head.fc is not None:
            nn.init.trunc_normal_(self.head.fc.weight, std=0.02)
            nn.init.zeros_(self.head.fc.bias)


class MobileViT(BackboneBase):
    """MobileViT classifier and backbone. Takes RGB images in [0, 1] by default, [B, C, H, W]."""

    def __init__(self, config: MobileViTConfig, features_only: bool = False) -> None:
        super().__init__()
        self.config = config
        self.features_only = features_only

        self.stem = ConvNormAct(config.in_chans, config.stem_channels, 3, stride=2)
        # Stages from which a stride of 2 becomes dilation, per output stride (ml-cvnets rule).
        first_dilated = {32: len(config.stages), 16: 4, 8: 3}[config.output_stride]
        dilation, reduction, in_ch = 1, 2, config.stem_channels
        stages: list[nn.Sequential] = []
        info: list[FeatureInfo] = []
        for i, spec in enumerate(config.stages):
            stride, prev_dilation = spec.stride, dilation
            if stride == 2 and i >= first_dilated:
                dilation *= 2
                stride = 1
            reduction *= stride
            blocks: list[nn.Module] = []
            if spec.is_vit:
                blocks.append(
                    InvertedResidual(
                        in_ch, spec.out_channels, stride, spec.expand_ratio, dilation=prev_dilation
                    )
                )
                assert spec.transformer_dim is not None
                blocks.append(
                    MobileViTBlock(
                        spec.out_channels,
                        spec.transformer_dim,
                        spec.transformer_depth,
                        num_heads=spec.num_heads,
                        ffn_dim=spec.ffn_dim,
                        patch_size=spec.patch_size,
                        kernel_size=config.conv_kernel_size,
                        dropout=config.transformer_dropout,
                        attn_dropout=config.attn_dropout,
                        ffn_dropout=config.ffn_dropout,
                        skip_connection=config.skip_connection,
                        layer_norm_eps=config.layer_norm_eps,
                        fusion=config.fusion,
                        fusion_residual=config.fusion_residual,
                        local_depthwise=config.local_depthwise,
                    )
                )
            else:
                for j in range(spec.num_blocks):
                    blocks.append(
                        InvertedResidual(
                            in_ch if j == 0 else spec.out_channels,
                            spec.out_channels,
                            stride if j == 0 else 1,
                            spec.expand_ratio,
                        )
                    )
            in_ch = spec.out_channels
            stages.append(nn.Sequential(*blocks))
            info.append(FeatureInfo(i, in_ch, reduction, f"stages.{i}"))
        self.stages = nn.ModuleList(stages)
        self.feature_info: tuple[FeatureInfo, ...] = tuple(info)
        self.num_features = in_ch

        self.num_classes = 0 if features_only else config.num_classes
        if not features_only:
            self.conv_exp = ConvNormAct(in_ch, config.exp_channels, 1)
            self.num_features = config.exp_channels
            self.head = ClassifierHead(config.exp_channels, config.num_classes, config.classifier_dropout)
        self.init_weights()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-pool features: the 1x1 expansion output (or the L5 output for a backbone)."""
        x = self.forward_stages(x, [len(self.stages) - 1])[0]
        return x if self.features_only else self.conv_exp(x)


class ClassifierHead(nn.Module):
    """Global average pool -> dropout -> linear (``num_classes=0``: pooled features only)."""

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(in_features, num_classes) if num_classes > 0 else None

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean(dim=(2, 3))  # [B, C, H, W] -> [B, C]
        if pre_logits or self.fc is None:
            return x
        return self.fc(self.drop(x))
