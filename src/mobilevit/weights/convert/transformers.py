"""Hugging Face transformers ``MobileViT*`` checkpoints <-> this package's key layout.

transformers splits the fused qkv projection into ``query / key / value`` linears; they are
concatenated back in that order (rows [0:d] q, [d:2d] k, [2d:3d] v), which is the layout of
ml-cvnets and timm. The image processor of the released models flips RGB to BGR before the
model, so these weights expect BGR input.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from .common import ConversionError, RuleSet

CHANNEL_ORDER = "BGR"

# transformers' MobileViTConfig for each v1 variant (its defaults are mobilevit_s')
HF_CONFIGS: dict[str, dict[str, Any]] = {
    "mobilevit_xxs": dict(
        hidden_sizes=[64, 80, 96], neck_hidden_sizes=[16, 16, 24, 48, 64, 80, 320], expand_ratio=2.0
    ),
    "mobilevit_xs": dict(hidden_sizes=[96, 120, 144], neck_hidden_sizes=[16, 32, 48, 64, 80, 96, 384]),
    "mobilevit_s": dict(hidden_sizes=[144, 192, 240], neck_hidden_sizes=[16, 32, 64, 96, 128, 160, 640]),
}


def hf_v2_width(model_name: str) -> float | None:
    """transformers' ``MobileViTV2Config(width_multiplier=...)`` for ``mobilevitv2_<width x 100>``
    names (``mobilevitv2_075`` -> 0.75), else None."""
    m = re.fullmatch(r"mobilevitv2_(\d{3})", model_name)
    return int(m[1]) / 100 if m else None


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


def arch_from_config(config: dict[str, Any]) -> str | None:
    """Our architecture for a transformers ``config.json`` (None if it is not a released variant)."""
    seg = any("SemanticSegmentation" in a for a in config.get("architectures") or [])
    if config.get("model_type") == "mobilevit":
        sizes = list(config.get("hidden_sizes", [144, 192, 240]))  # transformers' default is S
        arch = next((n for n, c in HF_CONFIGS.items() if c["hidden_sizes"] == sizes), None)
    elif config.get("model_type") == "mobilevitv2":
        arch = f"mobilevitv2_{round(100 * float(config.get('width_multiplier', 1.0))):03d}"
    else:
        return None
    return f"deeplabv3_{arch}" if seg and arch else arch


def is_v2(state_dict: dict[str, torch.Tensor]) -> bool:
    """A MobileViT v2 checkpoint (keys under ``mobilevitv2.``) rather than v1."""
    return any(k.startswith("mobilevitv2.") for k in state_dict)


def channel_order(state_dict: dict[str, torch.Tensor]) -> str:
    """v1: BGR (what the released image processors feed). v2: the same weights as ml-cvnets v0.2
    and timm, trained on RGB (PIL) images; the hub's processors flip to BGR anyway, carried over
    from v1 (docs/guides/weights.md, "Input convention", says why RGB is believed)."""
    return "RGB" if is_v2(state_dict) else CHANNEL_ORDER


def is_transformers(state_dict: dict[str, torch.Tensor]) -> bool:
    """A transformers MobileViT (v1 or v2) checkpoint: a ``conv_stem.convolution.weight`` key."""
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
    """A transformers state dict's task: ``segmentation`` (``segmentation_head.``) or ``classification``."""
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


# ------------------------------------------------------------------ ours -> transformers
_MV2_OUT = {ours: theirs for theirs, ours in _MV2.items()}
_CONV_OUT = {ours: theirs for theirs, ours in _CONV.items()}
_BLOCK_OUT = {ours: theirs for theirs, ours in _BLOCK.items()}
_TL_OUT = {ours: theirs for theirs, ours in _TL.items()}
_TL_V2_OUT = {ours: theirs for theirs, ours in _TL_V2.items()}
_OURS = r"(?P<b>(backbone\.)?)"


def _mv2_out(m: re.Match[str], model: str) -> str:
    """MV2 stages (L1, L2) keep ``layer.{j}``; a MobileViT stage's MV2 is its ``downsampling_layer``."""
    where = f"layer.{m['j']}" if int(m["i"]) < 2 else "downsampling_layer"
    return f"{model}.encoder.layer.{m['i']}.{where}.{_MV2_OUT[m['c']]}.{_CONV_OUT[m['m']]}.{m['t']}"


def _out_rules(model: str, v2: bool) -> RuleSet:
    """Our keys (classifier, or a segmenter's ``backbone.``) -> transformers' (``model.`` prefix)."""
    layer = rf"{_OURS}stages\.(?P<i>\d)\.1\."
    conv = r"(?P<m>conv|norm)\.(?P<t>\w+)"
    enc = f"{model}.encoder.layer."
    common = (
        (_OURS + r"stem\." + conv, lambda m: f"{model}.conv_stem.{_CONV_OUT[m['m']]}.{m['t']}"),
        (
            _OURS + r"stages\.(?P<i>\d)\.(?P<j>\d+)\.(?P<c>expand|dw|project)\." + conv,
            lambda m: _mv2_out(m, model),
        ),
        (layer + r"norm\.(?P<t>weight|bias)", lambda m: f"{enc}{m['i']}.layernorm.{m['t']}"),
        (r"head\.fc\.(?P<t>weight|bias)", r"classifier.\g<t>"),
    )
    tl = _TL_V2_OUT if v2 else _TL_OUT
    block = (
        (
            layer + r"(?P<c>conv_kxk|conv_proj)\." + conv,
            lambda m: (
                f"{enc}{m['i']}.{'conv_kxk' if m['c'] == 'conv_kxk' else 'conv_projection'}."
                f"{_CONV_OUT[m['m']]}.{m['t']}"
            ),
        ),
        (layer + r"conv_1x1\.weight", lambda m: f"{enc}{m['i']}.conv_1x1.convolution.weight"),
    )
    if not v2:
        block = (
            (
                layer + r"(?P<c>conv_local|conv_proj|conv_fusion)\." + conv,
                lambda m: f"{enc}{m['i']}.{_BLOCK_OUT[m['c']]}.{_CONV_OUT[m['m']]}.{m['t']}",
            ),
            (layer + r"conv_in\.weight", lambda m: f"{enc}{m['i']}.conv_1x1.convolution.weight"),
            (
                r"conv_exp\." + conv,
                lambda m: f"{model}.conv_1x1_exp.{_CONV_OUT[m['m']]}.{m['t']}",
            ),
        )
    transformer = (
        layer
        + r"transformer\.(?P<j>\d+)\.(?P<w>"
        + "|".join(re.escape(k) for k in tl)
        + r")\.(?P<t>weight|bias)",
        lambda m: f"{enc}{m['i']}.transformer.layer.{m['j']}.{tl[m['w']]}.{m['t']}",
    )
    return RuleSet("mobilevit -> transformers", (*common, *block, transformer))


SEG_HEAD_OUT = RuleSet(
    "mobilevit -> transformers",
    (
        (
            r"aspp\.convs\.4\.conv\.(?P<m>conv|norm)\.(?P<t>\w+)",
            lambda m: f"segmentation_head.aspp.convs.4.conv_1x1.{_CONV_OUT[m['m']]}.{m['t']}",
        ),
        (
            r"aspp\.convs\.(?P<i>[0-3])\.(?P<m>conv|norm)\.(?P<t>\w+)",
            lambda m: f"segmentation_head.aspp.convs.{m['i']}.{_CONV_OUT[m['m']]}.{m['t']}",
        ),
        (
            r"aspp\.project\.(?P<m>conv|norm)\.(?P<t>\w+)",
            lambda m: f"segmentation_head.aspp.project.{_CONV_OUT[m['m']]}.{m['t']}",
        ),
        (r"classifier\.(?P<t>weight|bias)", r"segmentation_head.classifier.convolution.\g<t>"),
    ),
)


def split_qkv(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of `merge_qkv`: ``attn.qkv`` rows [0:d] / [d:2d] / [2d:3d] -> ``attn.q / k / v``."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        m = re.fullmatch(r"(?P<base>.*\.attn)\.qkv\.(?P<t>weight|bias)", key)
        if not m:
            out[key] = value
            continue
        for x, part in zip("qkv", value.chunk(3, dim=0), strict=True):
            out[f"{m['base']}.{x}.{m['t']}"] = part.contiguous()
    return out


def from_ours(state_dict: dict[str, torch.Tensor], v2: bool, task: str) -> dict[str, torch.Tensor]:
    """Our classifier or DeepLabv3 state dict -> transformers'
    ``MobileViT(V2)For{ImageClassification,SemanticSegmentation}`` layout.

    Args:
        state_dict: our tensors; a DeepLabv3's backbone keys under ``backbone.``.
        v2: a MobileViT v2 (``mobilevitv2.`` keys) rather than v1 (``mobilevit.``, q / k / v split).
        task: ``classification``; anything else is taken as segmentation (``aspp.`` /
            ``classifier.`` go to ``segmentation_head.``).

    Returns:
        The tensors under transformers' keys (the channel order is not changed).
    """
    model = "mobilevitv2" if v2 else "mobilevit"
    if task == "classification":
        return _out_rules(model, v2).apply(state_dict if v2 else split_qkv(state_dict))
    head_keys = ("aspp.", "classifier.")
    head = {k: v for k, v in state_dict.items() if k.startswith(head_keys)}
    body = {k: v for k, v in state_dict.items() if not k.startswith(head_keys)}
    body = _out_rules(model, v2).apply(body if v2 else split_qkv(body))
    return {**body, **SEG_HEAD_OUT.apply(head)}
