"""The export graph shaped for XNNPACK: the same math in ops its partitioner takes.

XNNPACK (the CPU backend of ExecuTorch and LiteRT) has no LayerNorm, GroupNorm, SDPA or sum
kernel in ExecuTorch's partitioner, and its mean is a global average pool: over the two inner
dims of a rank-4 tensor, keeping them. A graph that uses those ops runs them on ExecuTorch's
portable (reference) kernels, outside the delegate, with a copy in and out of it each time.
:func:`shape_for_xnnpack` swaps, in a BN-folded copy, each such module for one that writes the
same computation with what XNNPACK runs: means over rank-4 views, ``bmm``, slices, permutes,
softmax over the last dim. The outputs are the model's (up to float rounding).

- LayerNorm over the tokens' last dim (v1's transformer, Section 3.1): mean and variance as
  means over a [M, 1, d, 1] view;
- v1's multi-head attention: q, k, v as slices of the fused projection, two rank-3 ``bmm``
  and a softmax instead of SDPA;
- GroupNorm(1) over [B, d, P, N] (v2's "layer_norm_2d", Section 3.2 of the v2 paper): the
  same means over a [B, 1, d*P*N, 1] view, then the per-channel affine;
- v2's separable attention: the softmax over the patches on a rank-3 view (a last-dim softmax
  of a rank-4 map is lowered wrongly by ExecuTorch 1.5.1, whose XNNPACK graph holds such maps
  channels-last) and the context vector as a rank-3 ``bmm`` of the keys with the scores (a
  scalar constant would stay outside the delegate);
- the classifier's global average pool with ``keepdim``, then a flatten.
"""

from __future__ import annotations

import torch
from torch import nn

from ..models.backbone import ClassifierHead
from ..models.blocks import Attention
from ..models.mobilevitv2 import LinearSelfAttention


def _mean_inner(x4: torch.Tensor) -> torch.Tensor:
    """Mean over dims 2 and 3 of a rank-4 tensor, kept: XNNPACK's global average pooling."""
    return x4.mean(dim=(2, 3), keepdim=True)


def _normalize(x4: torch.Tensor, eps: float) -> torch.Tensor:
    """(x - mean) / sqrt(var + eps) over dims 2 and 3 of a rank-4 view (biased variance, as the norms)."""
    centered = x4 - _mean_inner(x4)
    return centered * torch.rsqrt(_mean_inner(centered * centered) + eps)


class TokenLayerNorm(nn.Module):
    """``nn.LayerNorm(d)`` on [..., d] tokens, computed over a [1, R, d, 1] view (R tokens).

    XNNPACK holds the view channels-last, [1, d, 1, R]: each mean pools over d with the R tokens
    as its channels, the axis its kernels vectorise (a [R, 1, d, 1] view would pool one channel
    at a time: about twice as slow).
    """

    def __init__(self, norm: nn.LayerNorm) -> None:
        super().__init__()
        (self.dim,) = norm.normalized_shape
        self.eps = norm.eps
        self.weight, self.bias = norm.weight, norm.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        y = _normalize(x.reshape(1, -1, self.dim, 1), self.eps).reshape(shape)  # [..., d]
        if self.weight is not None:
            y = y * self.weight
        if self.bias is not None:
            y = y + self.bias
        return y


class GroupNorm1(nn.Module):
    """``nn.GroupNorm(1, d)`` on [B, d, P, N]: each sample's mean as the mean of its d channel
    means (the channels have equal counts), so both stages are XNNPACK average pools that
    vectorise over channels ([B, d, P, N] pooled over P, N; then [B, 1, d, 1] over d)."""

    def __init__(self, norm: nn.GroupNorm) -> None:
        super().__init__()
        self.eps = norm.eps
        self.weight, self.bias = norm.weight, norm.bias

    @staticmethod
    def _sample_mean(x: torch.Tensor) -> torch.Tensor:
        b, d = x.shape[:2]
        per_channel = _mean_inner(x)  # [B, d, 1, 1]
        return _mean_inner(per_channel.reshape(b, 1, d, 1))  # [B, 1, 1, 1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = x.shape[1]
        centered = x - self._sample_mean(x)  # [B, d, P, N]
        y = centered * torch.rsqrt(self._sample_mean(centered * centered) + self.eps)
        if self.weight is not None:
            y = y * self.weight.reshape(1, d, 1, 1)
        if self.bias is not None:
            y = y + self.bias.reshape(1, d, 1, 1)
        return y


class BmmAttention(nn.Module):
    """v1's :class:`~mobilevit.models.blocks.Attention` (unfolded [M, N, d] tokens) with q, k, v
    sliced from the fused projection and two rank-3 ``bmm`` around a softmax."""

    def __init__(self, attn: Attention) -> None:
        super().__init__()
        self.qkv, self.proj = attn.qkv, attn.proj
        self.heads, self.head_dim = attn.num_heads, attn.head_dim

    def forward(self, x: torch.Tensor, grid: tuple[int, int, int, int] | None = None) -> torch.Tensor:
        if grid is not None:
            raise ValueError("the XNNPACK graph takes unfolded tokens (patch layout 'nchw' or 'nhwc')")
        m, n, d = x.shape  # [M = B*P, N, d]
        h, hd = self.heads, self.head_dim
        qkv = self.qkv(x)  # [M, N, 3d]: [q | k | v]
        q = qkv[..., :d] * hd**-0.5
        k, v = qkv[..., d : 2 * d], qkv[..., 2 * d :]
        # [M, N, d] -> [M, N, heads, hd] -> [M, heads, N, hd] -> [M*heads, N, hd]
        q = q.reshape(m, n, h, hd).permute(0, 2, 1, 3).reshape(m * h, n, hd)
        v = v.reshape(m, n, h, hd).permute(0, 2, 1, 3).reshape(m * h, n, hd)
        kt = k.reshape(m, n, h, hd).permute(0, 2, 3, 1).reshape(m * h, hd, n)  # [M*heads, hd, N]
        y = torch.bmm(torch.bmm(q, kt).softmax(dim=-1), v)  # [M*heads, N, hd]
        # [M*heads, N, hd] -> [M, heads, N, hd] -> [M, N, heads, hd] -> [M, N, d]
        return self.proj(y.reshape(m, h, n, hd).permute(0, 2, 1, 3).reshape(m, n, d))


class BmmContextAttention(nn.Module):
    """v2's :class:`~mobilevit.models.mobilevitv2.LinearSelfAttention` with the softmax on a rank-3
    view and the context vector (the keys summed under the scores) as one rank-3 ``bmm``."""

    def __init__(self, attn: LinearSelfAttention) -> None:
        super().__init__()
        self.dim, self.qkv_proj, self.out_proj = attn.dim, attn.qkv_proj, attn.out_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, d, p, n = x.shape  # [B, d, P, N]
        qkv = self.qkv_proj(x)  # [B, 1 + 2d, P, N]
        q, k, v = qkv[:, :1], qkv[:, 1 : 1 + d], qkv[:, 1 + d :]
        # the softmax over the patches on a rank-3 view: XNNPACK keeps rank-4 maps channels-last,
        # and ExecuTorch 1.5's lowering of a last-dim softmax on one is wrong
        scores = q.reshape(b, p, n).softmax(dim=-1)  # [B, P, N]
        # context[b, c, p] = sum_n k[b, c, p, n] * scores[b, p, n]: [B*P, d, N] @ [B*P, N, 1]
        keys = k.permute(0, 2, 1, 3).reshape(b * p, d, n)
        context = torch.bmm(keys, scores.reshape(b * p, n, 1))  # [B*P, d, 1]
        context = context.reshape(b, p, d, 1).permute(0, 2, 1, 3)  # [B, d, P, 1]
        return self.out_proj(torch.relu(v) * context)


class PooledHead(nn.Module):
    """:class:`~mobilevit.models.backbone.ClassifierHead` with the pool kept rank-4, then flattened."""

    def __init__(self, head: ClassifierHead) -> None:
        super().__init__()
        self.fc = head.fc

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = _mean_inner(x).flatten(1)  # [B, C, H, W] -> [B, C, 1, 1] -> [B, C]
        return x if pre_logits or self.fc is None else self.fc(x)


def _replacement(module: nn.Module) -> nn.Module | None:
    if isinstance(module, nn.LayerNorm) and len(module.normalized_shape) == 1:
        return TokenLayerNorm(module)
    if isinstance(module, nn.GroupNorm) and module.num_groups == 1:
        return GroupNorm1(module)
    if isinstance(module, Attention):
        return BmmAttention(module)
    if isinstance(module, LinearSelfAttention):
        return BmmContextAttention(module)
    if isinstance(module, ClassifierHead):
        return PooledHead(module)
    return None


def shape_for_xnnpack(model: nn.Module, keep: tuple[type[nn.Module], ...] = ()) -> int:
    """Swap, in place, every module XNNPACK would leave to portable kernels for its rewrite (the
    module docstring lists them), except those of the types in ``keep``; ``model`` must be an
    inference copy (BN folded, eval mode). Returns the number of modules swapped."""
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            new = None if isinstance(child, keep) else _replacement(child)
            if new is not None:
                setattr(parent, name, new)
                swapped += 1
    return swapped
