"""Hugging Face transformers ``MobileViT*`` checkpoints -> this package's key layout.

transformers splits the fused qkv projection into ``query / key / value`` linears; they are
concatenated back in that order (rows [0:d] q, [d:2d] k, [2d:3d] v), which is the layout of
ml-cvnets and timm. The image processor of the released models flips RGB to BGR before the
model, so these weights expect BGR input.
"""

from __future__ import annotations

import re

import torch

from .common import ConversionError, RuleSet

CHANNEL_ORDER = "BGR"

_MV2 = {"expand_1x1": "expand", "conv_3x3": "dw", "reduce_1x1": "project"}
_CONV = {"convolution": "conv", "normalization": "norm"}
_TL = {
    "attention.attention.query": "attn.q",
    "attention.attention.key": "attn.k",
    "attention.attention.value": "attn.v",
    "attention.output.dense": "attn.proj",
    "intermediate.dense": "mlp.fc1",
    "output.dense": "mlp.fc2",
    "layernorm_before": "norm1",
    "layernorm_after": "norm2",
}
_BLOCK = {"conv_kxk": "conv_local", "conv_projection": "conv_proj", "fusion": "conv_fusion"}
_P = r"(?P<p>(mobilevit\.)?)"


def _pre(m: re.Match[str], seg: bool) -> str:
    return "backbone." if seg else ""


def _rules(seg: bool) -> RuleSet:
    return RuleSet(
        "transformers",
        (
            (
                _P + r"conv_stem\.(?P<m>convolution|normalization)\.(?P<t>\w+)",
                lambda m: f"{_pre(m, seg)}stem.{_CONV[m['m']]}.{m['t']}",
            ),
            (
                _P + r"encoder\.layer\.(?P<i>\d)\.layer\.(?P<j>\d+)\.(?P<c>expand_1x1|conv_3x3|reduce_1x1)"
                r"\.(?P<m>convolution|normalization)\.(?P<t>\w+)",
                lambda m: f"{_pre(m, seg)}stages.{m['i']}.{m['j']}.{_MV2[m['c']]}.{_CONV[m['m']]}.{m['t']}",
            ),
            (
                _P + r"encoder\.layer\.(?P<i>\d)\.downsampling_layer\.(?P<c>expand_1x1|conv_3x3|reduce_1x1)"
                r"\.(?P<m>convolution|normalization)\.(?P<t>\w+)",
                lambda m: f"{_pre(m, seg)}stages.{m['i']}.0.{_MV2[m['c']]}.{_CONV[m['m']]}.{m['t']}",
            ),
            (
                _P + r"encoder\.layer\.(?P<i>\d)\.(?P<c>conv_kxk|conv_projection|fusion)"
                r"\.(?P<m>convolution|normalization)\.(?P<t>\w+)",
                lambda m: f"{_pre(m, seg)}stages.{m['i']}.1.{_BLOCK[m['c']]}.{_CONV[m['m']]}.{m['t']}",
            ),
            (
                _P + r"encoder\.layer\.(?P<i>\d)\.conv_1x1\.convolution\.weight",
                lambda m: f"{_pre(m, seg)}stages.{m['i']}.1.conv_in.weight",
            ),
            (
                _P
                + r"encoder\.layer\.(?P<i>\d)\.transformer\.layer\.(?P<j>\d+)\.(?P<w>"
                + "|".join(re.escape(k) for k in _TL)
                + r")\.(?P<t>weight|bias)",
                lambda m: f"{_pre(m, seg)}stages.{m['i']}.1.transformer.{m['j']}.{_TL[m['w']]}.{m['t']}",
            ),
            (
                _P + r"encoder\.layer\.(?P<i>\d)\.layernorm\.(?P<t>weight|bias)",
                lambda m: f"{_pre(m, seg)}stages.{m['i']}.1.norm.{m['t']}",
            ),
            (
                _P + r"conv_1x1_exp\.(?P<m>convolution|normalization)\.(?P<t>\w+)",
                lambda m: f"conv_exp.{_CONV[m['m']]}.{m['t']}",
            ),
            (r"classifier\.(?P<t>weight|bias)", r"head.fc.\g<t>"),
        ),
    )


CLASSIFIER_RULES = _rules(seg=False)
BACKBONE_RULES = _rules(seg=True)


_TL_V2 = {
    "layernorm_before": "norm1",
    "attention.qkv_proj.convolution": "attn.qkv_proj",
    "attention.out_proj.convolution": "attn.out_proj",
    "layernorm_after": "norm2",
    "ffn.conv1.convolution": "mlp.fc1",
    "ffn.conv2.convolution": "mlp.fc2",
}
_P2 = r"mobilevitv2\.encoder\.layer\.(?P<i>\d)\."


# MobileViT v2 (``MobileViTV2*``): the same MV2 names; the separable-attention block's qkv is one conv
def _rules_v2(pre: str) -> RuleSet:
    return RuleSet(
        "transformers (v2)",
        (
            (
                r"mobilevitv2\.conv_stem\.(?P<m>convolution|normalization)\.(?P<t>\w+)",
                lambda m: f"{pre}stem.{_CONV[m['m']]}.{m['t']}",
            ),
            (
                _P2
                + r"layer\.(?P<j>\d+)\.(?P<c>expand_1x1|conv_3x3|reduce_1x1)\.(?P<m>convolution|normalization)\.(?P<t>\w+)",
                lambda m: f"{pre}stages.{m['i']}.{m['j']}.{_MV2[m['c']]}.{_CONV[m['m']]}.{m['t']}",
            ),
            (
                _P2
                + r"downsampling_layer\.(?P<c>expand_1x1|conv_3x3|reduce_1x1)\.(?P<m>convolution|normalization)\.(?P<t>\w+)",
                lambda m: f"{pre}stages.{m['i']}.0.{_MV2[m['c']]}.{_CONV[m['m']]}.{m['t']}",
            ),
            (
                _P2 + r"(?P<c>conv_kxk|conv_projection)\.(?P<m>convolution|normalization)\.(?P<t>\w+)",
                lambda m: (
                    f"{pre}stages.{m['i']}.1.{'conv_kxk' if m['c'] == 'conv_kxk' else 'conv_proj'}.{_CONV[m['m']]}.{m['t']}"
                ),
            ),
            (_P2 + r"conv_1x1\.convolution\.weight", pre + r"stages.\g<i>.1.conv_1x1.weight"),
            (
                _P2
                + r"transformer\.layer\.(?P<j>\d+)\.(?P<w>"
                + "|".join(re.escape(k) for k in _TL_V2)
                + r")\.(?P<t>weight|bias)",
                lambda m: f"{pre}stages.{m['i']}.1.transformer.{m['j']}.{_TL_V2[m['w']]}.{m['t']}",
            ),
            (_P2 + r"layernorm\.(?P<t>weight|bias)", pre + r"stages.\g<i>.1.norm.\g<t>"),
            (r"classifier\.(?P<t>weight|bias)", r"head.fc.\g<t>"),
        ),
    )


CLASSIFIER_RULES_V2 = _rules_v2("")
BACKBONE_RULES_V2 = _rules_v2("backbone.")
BACKBONE_RULES_V2 = _rules_v2("backbone.")


def is_v2(state_dict: dict[str, torch.Tensor]) -> bool:
    return any(k.startswith("mobilevitv2.") for k in state_dict)


def channel_order(state_dict: dict[str, torch.Tensor]) -> str:
    """v1: BGR (what the released image processors feed). v2: the same weights as ml-cvnets v0.2
    and timm, trained on RGB (PIL) images; the hub's processors flip to BGR anyway, carried over
    from v1 (README, "Input convention", says why RGB is believed)."""
    return "RGB" if is_v2(state_dict) else CHANNEL_ORDER


def is_transformers(state_dict: dict[str, torch.Tensor]) -> bool:
    return any(k.endswith("conv_stem.convolution.weight") for k in state_dict)


def merge_qkv(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Concatenate ``attn.q / attn.k / attn.v`` into ``attn.qkv`` (q, k, v order), in place order."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        m = re.fullmatch(r"(?P<base>.*\.attn)\.(?P<x>[qkv])\.(?P<t>weight|bias)", key)
        if not m:
            out[key] = value
            continue
        if m["x"] != "q":
            continue
        base, t = m["base"], m["t"]
        try:
            parts = [state_dict[f"{base}.{x}.{t}"] for x in "qkv"]
        except KeyError as e:
            raise ConversionError(f"transformers checkpoint: {base} lacks {e.args[0]}") from e
        out[f"{base}.qkv.{t}"] = torch.cat(parts, dim=0)
    return out


def convert_classifier(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``MobileViT(V2)ForImageClassification`` (or ``MobileViT(V2)Model``) state dict -> ours."""
    if is_v2(state_dict):
        return CLASSIFIER_RULES_V2.apply(state_dict)
    return merge_qkv(CLASSIFIER_RULES.apply(state_dict))


_CV = r"(?P<m>convolution|normalization)\.(?P<t>\w+)"
SEG_HEAD_RULES = RuleSet(
    "transformers",
    (
        (
            r"segmentation_head\.aspp\.convs\.4\.conv_1x1\." + _CV,
            lambda m: f"aspp.convs.4.conv.{_CONV[m['m']]}.{m['t']}",
        ),
        (
            r"segmentation_head\.aspp\.convs\.(?P<i>[0-3])\." + _CV,
            lambda m: f"aspp.convs.{m['i']}.{_CONV[m['m']]}.{m['t']}",
        ),
        (r"segmentation_head\.aspp\.project\." + _CV, lambda m: f"aspp.project.{_CONV[m['m']]}.{m['t']}"),
        (r"segmentation_head\.classifier\.convolution\.(?P<t>weight|bias)", r"classifier.\g<t>"),
    ),
)


def task_of(state_dict: dict[str, torch.Tensor]) -> str:
    return "segmentation" if any(k.startswith("segmentation_head.") for k in state_dict) else "classification"


def convert(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str]:
    """``MobileViTForImageClassification`` / ``MobileViTModel`` / ``MobileViTForSemanticSegmentation`` -> (ours, task)."""
    task = task_of(state_dict)
    if task == "classification":
        return convert_classifier(state_dict), task
    body_rules = BACKBONE_RULES_V2 if is_v2(state_dict) else BACKBONE_RULES
    head = {k: v for k, v in state_dict.items() if k.startswith("segmentation_head.")}
    body = {k: v for k, v in state_dict.items() if not k.startswith("segmentation_head.")}
    return {**merge_qkv(body_rules.apply(body)), **SEG_HEAD_RULES.apply(head)}, task
