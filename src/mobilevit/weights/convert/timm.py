"""timm ``mobilevit_*`` and ``mobilevitv2_*`` (ByobNet) state dicts <-> this package's key layout.

timm keeps ml-cvnets' structure under other names: ``stem``, ``stages.{i}.{j}`` with
``conv1_1x1 / conv2_kxk / conv3_1x1`` MV2 blocks and ``conv_kxk / conv_1x1 / transformer /
norm / conv_proj / conv_fusion`` MobileViT blocks, ``final_conv`` and ``head.fc``.
timm documents its copy of Apple's weights as RGB input, mean 0 / std 1.
"""

from __future__ import annotations

import torch

from .common import RuleSet

CHANNEL_ORDER = "RGB"

_MV2 = {"conv1_1x1": "expand", "conv2_kxk": "dw", "conv3_1x1": "project"}


def _norm(m: str) -> str:
    return "norm" if m == "bn" else m


RULES = RuleSet(
    "timm",
    (
        (r"stem\.(?P<m>conv|bn)\.(?P<t>\w+)", lambda m: f"stem.{_norm(m['m'])}.{m['t']}"),
        (
            r"stages\.(?P<i>\d)\.(?P<j>\d+)\.(?P<c>conv1_1x1|conv2_kxk|conv3_1x1)\.(?P<m>conv|bn)\.(?P<t>\w+)",
            lambda m: f"stages.{m['i']}.{m['j']}.{_MV2[m['c']]}.{_norm(m['m'])}.{m['t']}",
        ),
        (
            r"stages\.(?P<i>\d)\.1\.conv_kxk\.(?P<m>conv|bn)\.(?P<t>\w+)",
            lambda m: f"stages.{m['i']}.1.conv_local.{_norm(m['m'])}.{m['t']}",
        ),
        (r"stages\.(?P<i>\d)\.1\.conv_1x1\.weight", r"stages.\g<i>.1.conv_in.weight"),
        (
            r"stages\.(?P<i>\d)\.1\.transformer\.(?P<j>\d+)\.(?P<w>norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.(?P<t>weight|bias)",
            r"stages.\g<i>.1.transformer.\g<j>.\g<w>.\g<t>",
        ),
        (r"stages\.(?P<i>\d)\.1\.norm\.(?P<t>weight|bias)", r"stages.\g<i>.1.norm.\g<t>"),
        (
            r"stages\.(?P<i>\d)\.1\.(?P<c>conv_proj|conv_fusion)\.(?P<m>conv|bn)\.(?P<t>\w+)",
            lambda m: f"stages.{m['i']}.1.{m['c']}.{_norm(m['m'])}.{m['t']}",
        ),
        (r"final_conv\.(?P<m>conv|bn)\.(?P<t>\w+)", lambda m: f"conv_exp.{_norm(m['m'])}.{m['t']}"),
        (r"head\.fc\.(?P<t>weight|bias)", r"head.fc.\g<t>"),
    ),
)


# MobileViT v2 (timm's ``mobilevitv2_*``): the same MV2 blocks; the v2 block's names are kept
RULES_V2 = RuleSet(
    "timm (v2)",
    (
        *RULES.rules[:2],  # stem, MV2 blocks
        (
            r"stages\.(?P<i>\d)\.1\.(?P<c>conv_kxk|conv_proj)\.(?P<m>conv|bn)\.(?P<t>\w+)",
            lambda m: f"stages.{m['i']}.1.{m['c']}.{_norm(m['m'])}.{m['t']}",
        ),
        (r"stages\.(?P<i>\d)\.1\.conv_1x1\.weight", r"stages.\g<i>.1.conv_1x1.weight"),
        (
            r"stages\.(?P<i>\d)\.1\.transformer\.(?P<j>\d+)\.(?P<w>norm1|norm2|attn\.qkv_proj|attn\.out_proj|mlp\.fc1|mlp\.fc2)\.(?P<t>weight|bias)",
            r"stages.\g<i>.1.transformer.\g<j>.\g<w>.\g<t>",
        ),
        (r"stages\.(?P<i>\d)\.1\.norm\.(?P<t>weight|bias)", r"stages.\g<i>.1.norm.\g<t>"),
        (r"head\.fc\.(?P<t>weight|bias)", r"head.fc.\g<t>"),
    ),
)


def is_v2(state_dict: dict[str, torch.Tensor]) -> bool:
    """MobileViT v2 (separable attention: one qkv conv to 1 + 2d channels) rather than v1."""
    return any(k.endswith("attn.qkv_proj.weight") for k in state_dict)


def is_timm(state_dict: dict[str, torch.Tensor]) -> bool:
    """A timm (ByobNet) MobileViT checkpoint: ``stem.bn`` and ``conv1_1x1`` MV2 keys."""
    return "stem.bn.weight" in state_dict and any(".conv1_1x1." in k for k in state_dict)


def convert_classifier(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm ``MobileVit`` (ByobNet) classifier state dict, v1 or v2 -> ours."""
    return (RULES_V2 if is_v2(state_dict) else RULES).apply(state_dict)


def convert(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str]:
    """timm has classifiers only."""
    return convert_classifier(state_dict), "classification"


# ------------------------------------------------------------------ ours -> timm
_MV2_OUT = {ours: theirs for theirs, ours in _MV2.items()}


def _bn(m: str) -> str:
    return "bn" if m == "norm" else m


_OUT_COMMON = (
    (r"stem\.(?P<m>conv|norm)\.(?P<t>\w+)", lambda m: f"stem.{_bn(m['m'])}.{m['t']}"),
    (
        r"stages\.(?P<i>\d)\.(?P<j>\d+)\.(?P<c>expand|dw|project)\.(?P<m>conv|norm)\.(?P<t>\w+)",
        lambda m: f"stages.{m['i']}.{m['j']}.{_MV2_OUT[m['c']]}.{_bn(m['m'])}.{m['t']}",
    ),
    (r"stages\.(?P<i>\d)\.1\.norm\.(?P<t>weight|bias)", r"stages.\g<i>.1.norm.\g<t>"),
    (r"head\.fc\.(?P<t>weight|bias)", r"head.fc.\g<t>"),
)

TO_TIMM = RuleSet(
    "mobilevit -> timm",
    (
        *_OUT_COMMON,
        (
            r"stages\.(?P<i>\d)\.1\.conv_local\.(?P<m>conv|norm)\.(?P<t>\w+)",
            lambda m: f"stages.{m['i']}.1.conv_kxk.{_bn(m['m'])}.{m['t']}",
        ),
        (r"stages\.(?P<i>\d)\.1\.conv_in\.weight", r"stages.\g<i>.1.conv_1x1.weight"),
        (
            r"stages\.(?P<i>\d)\.1\.transformer\.(?P<j>\d+)\.(?P<w>norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.(?P<t>weight|bias)",
            r"stages.\g<i>.1.transformer.\g<j>.\g<w>.\g<t>",
        ),
        (
            r"stages\.(?P<i>\d)\.1\.(?P<c>conv_proj|conv_fusion)\.(?P<m>conv|norm)\.(?P<t>\w+)",
            lambda m: f"stages.{m['i']}.1.{m['c']}.{_bn(m['m'])}.{m['t']}",
        ),
        (r"conv_exp\.(?P<m>conv|norm)\.(?P<t>\w+)", lambda m: f"final_conv.{_bn(m['m'])}.{m['t']}"),
    ),
)

TO_TIMM_V2 = RuleSet(
    "mobilevit -> timm (v2)",
    (
        *_OUT_COMMON,
        (
            r"stages\.(?P<i>\d)\.1\.(?P<c>conv_kxk|conv_proj)\.(?P<m>conv|norm)\.(?P<t>\w+)",
            lambda m: f"stages.{m['i']}.1.{m['c']}.{_bn(m['m'])}.{m['t']}",
        ),
        (r"stages\.(?P<i>\d)\.1\.conv_1x1\.weight", r"stages.\g<i>.1.conv_1x1.weight"),
        (
            r"stages\.(?P<i>\d)\.1\.transformer\.(?P<j>\d+)\.(?P<w>norm1|norm2|attn\.qkv_proj|attn\.out_proj|mlp\.fc1|mlp\.fc2)\.(?P<t>weight|bias)",
            r"stages.\g<i>.1.transformer.\g<j>.\g<w>.\g<t>",
        ),
    ),
)


def from_ours(state_dict: dict[str, torch.Tensor], v2: bool) -> dict[str, torch.Tensor]:
    """Our classifier state dict (RGB) -> timm's ``mobilevit_*`` / ``mobilevitv2_*`` layout."""
    return (TO_TIMM_V2 if v2 else TO_TIMM).apply(state_dict)
