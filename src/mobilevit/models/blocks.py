"""The MobileViT block (Section 3.1, Figure 1b of Mehta & Rastegari, ICLR 2022).

local representation (n x n conv, then 1x1 to width d) -> unfold into P = h*w pixel positions
x N non-overlapping patches -> L pre-norm transformer layers that attend, for each pixel
position, across all N patches -> fold back -> 1x1 projection to C -> concat with the block
input (the skip connection) -> n x n fusion conv.

The unfold / fold can move memory three ways with the same result (``set_patch_layout``): the
fastest differs between eager PyTorch, onnxruntime and Core ML.

A feature map whose side is not a multiple of the patch size is resized bilinearly to the next
multiple before unfolding and back after folding, as ml-cvnets, timm and transformers do.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ConvNormAct


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection, computed by SDPA."""

    def __init__(self, dim: int, num_heads: int, attn_dropout: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.attn_dropout = attn_dropout
        # qkv rows: [0:d] query, [d:2d] key, [2d:3d] value; heads are contiguous d/heads chunks
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.proj = nn.Linear(dim, dim, bias=True)

    def forward(self, x: torch.Tensor, grid: tuple[int, int, int, int] | None = None) -> torch.Tensor:
        """``x``: [B*P, N, d] unfolded tokens, or with ``grid = (nh, ph, nw, pw)`` [B, H*W, d]
        tokens in pixel order, each pixel attending to the pixels at its position in the other
        patches (the same attention, with the unfold / fold folded into its own transposes)."""
        dropout_p = self.attn_dropout if self.training else 0.0
        hh, hd = self.num_heads, self.head_dim
        if grid is None:
            b, n, d = x.shape  # [B*P, N, d]
            # [B*P, N, 3d] -> [B*P, N, 3, heads, hd] -> [3, B*P, heads, N, hd]
            qkv = self.qkv(x).reshape(b, n, 3, hh, hd).permute(2, 0, 3, 1, 4)
            q, k, v = qkv.unbind(0)
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
            # [B*P, heads, N, hd] -> [B*P, N, d]
            return self.proj(y.transpose(1, 2).reshape(b, n, d))
        b, hw, d = x.shape  # [B, H*W, d]
        nh, ph, nw, pw = grid
        # [B, H*W, 3d] = [B, nh, ph, nw, pw, 3, heads, hd] -> [3, B, ph, pw, heads, nh, nw, hd]
        qkv = self.qkv(x).reshape(b, nh, ph, nw, pw, 3, hh, hd).permute(5, 0, 2, 4, 6, 1, 3, 7)
        q, k, v = qkv.reshape(3, b * ph * pw, hh, nh * nw, hd).unbind(0)  # [B*P, heads, N, hd] each
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
        # [B*P, heads, N, hd] = [B, ph, pw, heads, nh, nw, hd] -> [B, nh, ph, nw, pw, heads, hd]
        y = y.reshape(b, ph, pw, hh, nh, nw, hd).permute(0, 4, 1, 5, 2, 3, 6)
        return self.proj(y.reshape(b, hw, d))


class FeedForward(nn.Module):
    """Linear d -> ffn -> SiLU -> dropout -> Linear ffn -> d."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.SiLU(inplace=True)  # fc1's output is read by nothing else
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(self.act(self.fc1(x))))


class TransformerLayer(nn.Module):
    """Pre-norm transformer encoder layer without positional embedding or drop-path."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        ffn_dim: int,
        dropout: float = 0.1,
        attn_dropout: float = 0.0,
        ffn_dropout: float = 0.0,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, attn_dropout)
        self.drop1 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = FeedForward(dim, ffn_dim, ffn_dropout)
        self.drop2 = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, grid: tuple[int, int, int, int] | None = None) -> torch.Tensor:
        x = x + self.drop1(self.attn(self.norm1(x), grid))
        return x + self.drop2(self.mlp(self.norm2(x)))


PATCH_LAYOUTS = ("pixels", "nhwc", "nchw")


def unfold_patches(x: torch.Tensor, ph: int, pw: int, layout: str = "nhwc") -> torch.Tensor:
    """[B, C, H, W] -> [B*P, N, C] with P = ph*pw pixel positions and N = (H/ph)*(W/pw) patches.

    Token ``[b*P + i*pw + j, n_h*nw + n_w]`` is pixel ``(n_h*ph + i, n_w*pw + j)`` of image b, the
    layout of ml-cvnets (section 3.1 of the paper: unfold into P-pixel patches).

    ``layout="nhwc"`` (default) goes through the [B, H, W, C] view: one copy that moves whole
    C-vectors (rank-6 permute), none more for a channels-last input. Measured here against the
    ``"nchw"`` way: eager inference 4-13 % faster (2 threads, 256 px), a training step 1-7 %,
    and in onnxruntime 6 % (it folds the NCHW -> NHWC transpose into its conv output reorder).
    ``"nchw"`` keeps every intermediate at rank <= 4, for Core ML (flexible shapes fail above
    rank 5); it makes two copies. (The block's third layout, ``"pixels"``, skips this function:
    see :class:`MobileViTBlock`.)
    """
    b, c, h, w = x.shape
    nh, nw = h // ph, w // pw
    if layout == "nhwc":
        # memory [B, H, W, C] = [B, nh, ph, nw, pw, C] -> [B, ph, pw, nh, nw, C] -> [B*P, N, C]
        x = x.permute(0, 2, 3, 1).reshape(b, nh, ph, nw, pw, c).permute(0, 2, 4, 1, 3, 5)
        return x.reshape(b * ph * pw, nh * nw, c)
    # [B, C, H, W] -> [B*C*nh, ph, nw, pw] -> [B*C*nh, nw, ph, pw]
    x = x.reshape(b * c * nh, ph, nw, pw).transpose(1, 2)
    # -> [B, C, N, P] -> [B, P, N, C] -> [B*P, N, C]
    return x.reshape(b, c, nh * nw, ph * pw).transpose(1, 3).reshape(b * ph * pw, nh * nw, c)


def fold_patches(
    x: torch.Tensor, batch: int, ph: int, pw: int, nh: int, nw: int, layout: str = "nhwc"
) -> torch.Tensor:
    """Inverse of :func:`unfold_patches`: [B*P, N, C] -> [B, C, nh*ph, nw*pw].

    ``layout="nhwc"`` folds into [B, H, W, C] memory (one copy, rank-6 permute) and returns its
    [B, C, H, W] view, channels-last; ``"nchw"`` keeps every reshape at rank <= 4 (Core ML).
    """
    c = x.shape[-1]
    if layout == "nhwc":
        # [B*P, N, C] -> [B, ph, pw, nh, nw, C] -> [B, nh, ph, nw, pw, C] = memory [B, H, W, C]
        x = x.reshape(batch, ph, pw, nh, nw, c).permute(0, 3, 1, 4, 2, 5)
        return x.reshape(batch, nh * ph, nw * pw, c).permute(0, 3, 1, 2)  # [B, C, H, W] view
    # [B*P, N, C] -> [B, P, N, C] -> [B, C, N, P] -> [B*C*nh, nw, ph, pw]
    x = x.reshape(batch, ph * pw, nh * nw, c).transpose(1, 3).reshape(batch * c * nh, nw, ph, pw)
    # -> [B*C*nh, ph, nw, pw] -> [B, C, H, W]
    return x.transpose(1, 2).reshape(batch, c, nh * ph, nw * pw)


class MobileViTBlock(nn.Module):
    """Local conv -> unfold -> transformers across patches -> fold -> projection -> fusion."""

    def __init__(
        self,
        channels: int,
        transformer_dim: int,
        depth: int,
        num_heads: int = 4,
        ffn_dim: int | None = None,
        patch_size: tuple[int, int] = (2, 2),
        kernel_size: int = 3,
        dropout: float = 0.1,
        attn_dropout: float = 0.0,
        ffn_dropout: float = 0.0,
        skip_connection: bool = True,
        layer_norm_eps: float = 1e-5,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        self.patch_size = tuple(patch_size)
        self.skip_connection = skip_connection
        ffn_dim = 2 * transformer_dim if ffn_dim is None else ffn_dim
        self.conv_local = ConvNormAct(channels, channels, kernel_size, dilation=dilation)
        self.conv_in = nn.Conv2d(channels, transformer_dim, 1, bias=False)
        self.transformer = nn.Sequential(
            *[
                TransformerLayer(
                    transformer_dim, num_heads, ffn_dim, dropout, attn_dropout, ffn_dropout, layer_norm_eps
                )
                for _ in range(depth)
            ]
        )
        self.norm = nn.LayerNorm(transformer_dim, eps=layer_norm_eps)
        self.conv_proj = ConvNormAct(transformer_dim, channels, 1)
        fusion_in = 2 * channels if skip_connection else channels
        self.conv_fusion = ConvNormAct(fusion_in, channels, kernel_size)
        # how unfold / fold move memory (set_patch_layout): "nhwc" by default (fastest in eager
        # PyTorch here), "pixels" in the ONNX graph (fastest in onnxruntime), "nchw" for Core ML
        # (rank <= 4). Not a weight, not part of the config: the outputs are the same.
        self.patch_layout = "nhwc"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        y = self.conv_in(self.conv_local(x))  # [B, d, H, W]
        b, _, h, w = y.shape
        ph, pw = self.patch_size
        new_h, new_w = math.ceil(h / ph) * ph, math.ceil(w / pw) * pw
        resized = (new_h, new_w) != (h, w)
        if resized:
            y = F.interpolate(y, size=(new_h, new_w), mode="bilinear", align_corners=False)
        if self.patch_layout == "pixels":
            grid = (new_h // ph, ph, new_w // pw, pw)
            tokens = y.permute(0, 2, 3, 1).reshape(b, new_h * new_w, -1)  # [B, H*W, d], pixel order
            for layer in self.transformer:
                tokens = layer(tokens, grid)
            # [B, H*W, d] -> [B, H, W, d] -> [B, d, H, W] (a channels-last view)
            y = self.norm(tokens).reshape(b, new_h, new_w, -1).permute(0, 3, 1, 2)
        else:
            tokens = unfold_patches(y, ph, pw, self.patch_layout)  # [B*P, N, d]
            tokens = self.norm(self.transformer(tokens))
            y = fold_patches(
                tokens, b, ph, pw, new_h // ph, new_w // pw, self.patch_layout
            )  # [B, d, new_h, new_w]
        if resized:
            y = F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False)
        y = self.conv_proj(y)
        if self.skip_connection:
            y = torch.cat((shortcut, y), dim=1)
        return self.conv_fusion(y)


def set_patch_layout(model: nn.Module, layout: str) -> int:
    """Set how every MobileViT block of ``model`` unfolds / folds; the outputs do not change.

    ``"nhwc"`` (default): :func:`unfold_patches` through the [B, H, W, C] view, one copy each
    way. ``"pixels"``: no unfold / fold at all; the tokens stay in pixel order [B, H*W, d]
    (LayerNorm and the linear layers act per token, so order does not matter to them) and each
    attention layer gathers a patch position's pixels inside the transposes it makes anyway
    (rank 8). In onnxruntime 3-16 % faster than ``"nhwc"`` (the ONNX export uses it), in eager
    PyTorch up to 10 % slower (its rank-8 copies move head_dim-long runs). ``"nchw"``: rank <= 4
    reshapes, for Core ML. Returns the number of blocks set.
    """
    if layout not in PATCH_LAYOUTS:
        raise ValueError(f"patch layout must be one of {', '.join(PATCH_LAYOUTS)}, not {layout!r}")
    blocks = [m for m in model.modules() if isinstance(m, MobileViTBlock)]
    for block in blocks:
        block.patch_layout = layout
    return len(blocks)
