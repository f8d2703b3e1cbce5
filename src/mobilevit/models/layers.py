"""Convolutional building blocks shared by MobileViT and its heads.

Section 3.1 of the paper (Mehta & Rastegari, ICLR 2022): the stem, the MobileNetV2 inverted
residual ("MV2") blocks used for down-sampling and local processing, and the 1x1 expansion
before the classifier are plain conv-BN-SiLU layers.
"""

from __future__ import annotations

import torch
from torch import nn


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never going down by more than 10%.

    The MobileNetV2 rule, used by ml-cvnets, timm and transformers alike for the MV2 hidden width.

    Args:
        value: the width to round.
        divisor: the multiple.
        min_value: the smallest result (default ``divisor``).

    Returns:
        The rounded width.
    """
    min_value = divisor if min_value is None else min_value
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return new_value


class ConvNormAct(nn.Sequential):
    """Conv2d (no bias) -> optional BatchNorm2d -> optional activation.

    Submodules are named ``conv``, ``norm`` and ``act`` so that checkpoints stay readable.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        norm: bool = True,
        act: type[nn.Module] | None = nn.SiLU,
        bias: bool | None = None,
        bn_momentum: float = 0.1,
        bn_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        padding = dilation * (kernel_size - 1) // 2
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias=(not norm) if bias is None else bias,
        )
        if norm:
            self.norm = nn.BatchNorm2d(out_channels, eps=bn_eps, momentum=bn_momentum)
        if act is not None:
            # in place when it follows a norm or conv output that nothing else reads: less memory
            # traffic in training, identical results (autograd supports in-place SiLU / ReLU)
            self.act = act(inplace=True) if act in (nn.SiLU, nn.ReLU, nn.ReLU6, nn.Hardswish) else act()


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand (BN, SiLU) -> depthwise kxk (BN, SiLU) -> 1x1 project (BN).

    The residual is used iff ``stride == 1`` and ``in_channels == out_channels``. With an
    expansion ratio of 1 the expand conv is skipped, as in MobileNetV2.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        expand_ratio: float = 4.0,
        dilation: int = 1,
        kernel_size: int = 3,
        act: type[nn.Module] = nn.SiLU,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"InvertedResidual stride must be 1 or 2, got {stride}")
        hidden = make_divisible(int(round(in_channels * expand_ratio)), 8)
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.use_residual = stride == 1 and in_channels == out_channels
        self.expand = ConvNormAct(in_channels, hidden, 1, act=act) if expand_ratio != 1 else nn.Identity()
        self.dw = ConvNormAct(
            hidden, hidden, kernel_size, stride=stride, dilation=dilation, groups=hidden, act=act
        )
        self.project = ConvNormAct(hidden, out_channels, 1, act=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.dw(self.expand(x)))
        return x + y if self.use_residual else y
