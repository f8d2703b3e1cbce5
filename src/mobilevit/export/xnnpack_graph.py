"""The export graph shaped for XNNPACK: the same math in ops its partitioner takes.

XNNPACK (the CPU backend of ExecuTorch and LiteRT) has no LayerNorm, GroupNorm, SDPA or sum
kernel in ExecuTorch's partitioner, and its mean is a global average pool: over the two inner
dims of a rank-4 tensor, keeping them. A graph that uses those ops runs them on ExecuTorch's
portable (reference) kernels, outside the delegate, with a copy in and out of it each time.
`shape_for_xnnpack` swaps, in a BN-folded copy, each such module for one that writes the
same computation with what XNNPACK runs: fully-connected layers, pools over rank-4 views,
``bmm``, permutes, softmax over the last dim; and SiLU, which XNNPACK runs, in the form the int8
quantizers take. The outputs are the model's (up to float rounding).

- LayerNorm over the tokens' last dim (v1's transformer, Section 3.1): mean and variance as a
  fully-connected layer onto one output (a 1/d row), so they stay in the tokens' own layout (a
  mean over a rank-4 view is an XNNPACK pool, held channels-last: a transpose in and one out);
- v1's multi-head attention: q, k, v as three projections (the 1/sqrt(d_h) scale folded into
  q's), two rank-3 ``bmm`` and a softmax instead of SDPA;
- GroupNorm(1) over [B, d, P, N] (v2's "layer_norm_2d", Section 3.2 of the v2 paper): each
  sample's mean as the mean of its channel means, two pools that vectorise over channels;
- v2's separable attention: the softmax over the patches on a rank-3 view (a last-dim softmax
  of a rank-4 map is lowered wrongly by ExecuTorch 1.5.1, whose XNNPACK graph holds such maps
  channels-last) and the context vector as a rank-3 ``bmm`` of the scores with the keys taken
  in the [B, P, N, d] order XNNPACK holds them in (no transpose of the keys; a sum with the
  scores as a scalar constant would stay outside the delegate);
- the classifier's global average pool with ``keepdim``, then a flatten;
- SiLU written out as ``x * sigmoid(x)``: the two ops both runtimes lower SiLU to in fp32, but
  now visible to the PT2E quantizers, which quantize the multiply, so an int8 graph keeps
  the activation in int8 instead of converting to float and back around it.

Before the swaps, each norm's per-channel affine is folded into the 1x1 projection that reads it
(`fold_norm_affines`): the norm then ends at ``(x - mean) / std``, two elementwise ops fewer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..models.backbone import ClassifierHead
from ..models.blocks import Attention, MobileViTBlock, TransformerLayer
from ..models.mobilevitv2 import LinearAttnFFN, LinearSelfAttention, MobileViTv2Block


def _mean_inner(x4: torch.Tensor) -> torch.Tensor:
    """Mean over dims 2 and 3 of a rank-4 tensor, kept: XNNPACK's global average pooling."""
    return x4.mean(dim=(2, 3), keepdim=True)


class TokenLayerNorm(nn.Module):
    """``nn.LayerNorm(d)`` on [..., d] tokens, both means a fully-connected layer onto one output.

    ``F.linear(x, 1/d row)`` is XNNPACK's fully-connected op on the tokens as they lie ([R, d]):
    no layout change, where a mean pooled over a rank-4 view costs a transpose in and one out.
    """

    def __init__(self, norm: nn.LayerNorm) -> None:
        super().__init__()
        (self.dim,) = norm.normalized_shape
        self.eps = norm.eps
        self.weight, self.bias = norm.weight, norm.bias
        self.register_buffer("avg", torch.full((1, self.dim), 1.0 / self.dim), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centered = x - F.linear(x, self.avg)  # [..., d] - [..., 1]
        y = centered * torch.rsqrt(F.linear(centered * centered, self.avg) + self.eps)
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
    """v1's `Attention` (unfolded [M, N, d] tokens) with q, k, v as
    three projections (q's scaled by 1/sqrt(d_h): no slices of a fused output, no scale op) and two
    rank-3 ``bmm`` around a softmax."""

    def __init__(self, attn: Attention) -> None:
        super().__init__()
        self.proj = attn.proj
        self.heads, self.head_dim = attn.num_heads, attn.head_dim
        d = attn.proj.in_features
        weight, bias = attn.qkv.weight.detach(), attn.qkv.bias.detach()  # rows [q | k | v]
        for i, name in enumerate(("q", "k", "v")):
            scale = self.head_dim**-0.5 if name == "q" else 1.0
            linear = nn.Linear(d, d, dtype=weight.dtype)
            with torch.no_grad():
                linear.weight.copy_(weight[i * d : (i + 1) * d] * scale)
                linear.bias.copy_(bias[i * d : (i + 1) * d] * scale)
            linear.requires_grad_(False)
            setattr(self, name, linear)

    def forward(self, x: torch.Tensor, grid: tuple[int, int, int, int] | None = None) -> torch.Tensor:
        if grid is not None:
            raise ValueError("the XNNPACK graph takes unfolded tokens (patch layout 'nchw' or 'nhwc')")
        m, n, d = x.shape  # [M = B*P, N, d]
        h, hd = self.heads, self.head_dim
        # [M, N, d] -> [M, N, heads, hd] -> [M, heads, N, hd] -> [M*heads, N, hd]
        q = self.q(x).reshape(m, n, h, hd).permute(0, 2, 1, 3).reshape(m * h, n, hd)
        v = self.v(x).reshape(m, n, h, hd).permute(0, 2, 1, 3).reshape(m * h, n, hd)
        kt = self.k(x).reshape(m, n, h, hd).permute(0, 2, 3, 1).reshape(m * h, hd, n)  # [M*heads, hd, N]
        y = torch.bmm(torch.bmm(q, kt).softmax(dim=-1), v)  # [M*heads, N, hd]
        # [M*heads, N, hd] -> [M, heads, N, hd] -> [M, N, heads, hd] -> [M, N, d]
        return self.proj(y.reshape(m, h, n, hd).permute(0, 2, 1, 3).reshape(m, n, d))


class BmmContextAttention(nn.Module):
    """v2's `LinearSelfAttention` with the softmax on a rank-3
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
        scores = q.reshape(b * p, 1, n).softmax(dim=-1)  # [B*P, 1, N]
        # context[b, c, p] = sum_n scores[b, p, n] * k[b, c, p, n]: [B*P, 1, N] @ [B*P, N, d]; the
        # keys' [B, P, N, d] order is how XNNPACK holds the [B, d, P, N] map (channels-last)
        keys = k.permute(0, 2, 3, 1).reshape(b * p, n, d)
        context = torch.bmm(scores, keys)  # [B*P, 1, d]
        context = context.reshape(b, p, 1, d).permute(0, 3, 1, 2)  # [B, d, P, 1]
        return self.out_proj(torch.relu(v) * context)


class PooledHead(nn.Module):
    """`ClassifierHead` with the pool kept rank-4, then flattened."""

    def __init__(self, head: ClassifierHead) -> None:
        super().__init__()
        self.fc = head.fc

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = _mean_inner(x).flatten(1)  # [B, C, H, W] -> [B, C, 1, 1] -> [B, C]
        return x if pre_logits or self.fc is None else self.fc(x)


class Swish(nn.Module):
    """``nn.SiLU`` as ``x * sigmoid(x)`` (the activation of every MobileViT conv and FFN)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


@torch.no_grad()
def fold_norm_affine(norm: nn.Module, consumer: nn.Module) -> bool:
    """Fold ``norm``'s per-channel affine (gamma, beta over d channels) into ``consumer``, the linear
    or 1x1 conv that reads it (its first d input channels), in place; ``norm`` is left without it.

    ``W (gamma * x + beta) + b = (W gamma) x + (W beta + b)``. False (nothing changed) where the
    norm has no affine or the consumer is not a plain linear / 1x1 conv.
    """
    gamma, beta = getattr(norm, "weight", None), getattr(norm, "bias", None)
    affine = gamma if gamma is not None else beta
    if affine is None or affine.dim() != 1:
        return False  # no affine, or one over more than the channel dim
    if isinstance(consumer, nn.Conv2d):
        if consumer.kernel_size != (1, 1) or consumer.groups != 1:
            return False
        weight = consumer.weight[:, :, 0, 0]  # [C_out, C_in] view of [C_out, C_in, 1, 1]
    elif isinstance(consumer, nn.Linear):
        weight = consumer.weight
    else:
        return False
    d = affine.numel()
    if consumer.bias is None:
        consumer.bias = nn.Parameter(torch.zeros(weight.shape[0], dtype=weight.dtype), requires_grad=False)
    if beta is not None:
        consumer.bias += weight[:, :d] @ beta
    if gamma is not None:
        weight[:, :d] *= gamma  # in place: the conv's 4-d weight through its view
    norm.weight = norm.bias = None
    return True


def _norm_consumers(module: nn.Module) -> list[tuple[nn.Module, nn.Module]]:
    """(norm, the projection that reads it) pairs of one block or layer."""
    if isinstance(module, TransformerLayer):
        return [(module.norm1, module.attn.qkv), (module.norm2, module.mlp.fc1)]
    if isinstance(module, LinearAttnFFN):
        return [(module.norm1, module.attn.qkv_proj), (module.norm2, module.mlp.fc1)]
    if isinstance(module, (MobileViTBlock, MobileViTv2Block)):
        # the fold (and v1's resize, bilinear: weights summing to 1) commute with a per-channel
        # affine, so the final norm's goes into the projection after them (v3: its first d inputs)
        return [(module.norm, module.conv_proj.conv)]
    return []


def fold_norm_affines(model: nn.Module) -> int:
    """`fold_norm_affine` for every transformer norm of ``model`` (an inference copy) whose
    reader is a projection; returns how many were folded."""
    return sum(
        fold_norm_affine(norm, consumer)
        for module in list(model.modules())
        for norm, consumer in _norm_consumers(module)
        if isinstance(norm, (nn.LayerNorm, nn.GroupNorm))
    )


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
    if isinstance(module, nn.SiLU):
        return Swish()
    return None


def shape_for_xnnpack(model: nn.Module, keep: tuple[type[nn.Module], ...] = ()) -> int:
    """Swap, in place, every module XNNPACK would leave to portable kernels (or an int8 graph to
    float) for its rewrite (the module docstring lists them), except those of the types in
    ``keep``; ``model`` must be an inference copy (BN folded, eval mode). Returns the number of
    modules swapped. The norms' affines are folded into their readers first
    (`fold_norm_affines`)."""
    fold_norm_affines(model)
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            new = None if isinstance(child, keep) else _replacement(child)
            if new is not None:
                setattr(parent, name, new)
                swapped += 1
    return swapped
