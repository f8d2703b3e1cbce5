"""Apple ml-cvnets v0.1 checkpoints -> this package's key layout.

Layout (the official checkpoints' key names): ``conv_1`` stem, ``layer_{1..5}`` stages with
``block.{exp_1x1,conv_3x3,red_1x1}`` MV2 blocks, MobileViT blocks with ``local_rep``,
``global_rep`` (pre-norm transformer layers + a final LayerNorm), ``conv_proj`` and ``fusion``,
then ``conv_1x1_exp`` and ``classifier.fc``. Detection and segmentation models prefix the
backbone with ``encoder.``. The weights were trained on BGR images.
"""

from __future__ import annotations

import torch

from .common import RuleSet, shift_stage

CHANNEL_ORDER = "BGR"

_L = r"(?P<p>(encoder\.)?)layer_(?P<layer>[1-5])"
_MV2 = {"exp_1x1": "expand", "conv_3x3": "dw", "red_1x1": "project"}
_FFN = {"0": "norm2", "1": "mlp.fc1", "4": "mlp.fc2"}


def _p(m) -> str:  # prefix carried over as our "backbone." for encoder-wrapped checkpoints
    return "backbone." if m.group("p") else ""


BACKBONE_RULES = RuleSet(
    "cvnets",
    (
        (
            r"(?P<p>(encoder\.)?)conv_1\.block\.(?P<m>conv|norm)\.(?P<t>\w+)",
            lambda m: f"{_p(m)}stem.{m['m']}.{m['t']}",
        ),
        (
            _L + r"\.(?P<j>\d+)\.block\.(?P<c>exp_1x1|conv_3x3|red_1x1)\.block\.(?P<m>conv|norm)\.(?P<t>\w+)",
            lambda m: _p(m) + shift_stage(m, "stages.{layer}.{j}." + _MV2[m["c"]] + ".{m}.{t}"),
        ),
        (
            _L + r"\.1\.local_rep\.conv_3x3\.block\.(?P<m>conv|norm)\.(?P<t>\w+)",
            lambda m: _p(m) + shift_stage(m, "stages.{layer}.1.conv_local.{m}.{t}"),
        ),
        (
            _L + r"\.1\.local_rep\.conv_1x1\.block\.conv\.weight",
            lambda m: _p(m) + shift_stage(m, "stages.{layer}.1.conv_in.weight"),
        ),
        (
            _L + r"\.1\.global_rep\.(?P<j>\d+)\.pre_norm_mha\.0\.(?P<t>weight|bias)",
            lambda m: _p(m) + shift_stage(m, "stages.{layer}.1.transformer.{j}.norm1.{t}"),
        ),
        (
            _L
            + r"\.1\.global_rep\.(?P<j>\d+)\.pre_norm_mha\.1\.(?P<w>qkv_proj|out_proj)\.(?P<t>weight|bias)",
            lambda m: (
                _p(m)
                + shift_stage(
                    m,
                    "stages.{layer}.1.transformer.{j}.attn."
                    + ("qkv" if m["w"] == "qkv_proj" else "proj")
                    + ".{t}",
                )
            ),
        ),
        (
            _L + r"\.1\.global_rep\.(?P<j>\d+)\.pre_norm_ffn\.(?P<i>[014])\.(?P<t>weight|bias)",
            lambda m: _p(m) + shift_stage(m, "stages.{layer}.1.transformer.{j}." + _FFN[m["i"]] + ".{t}"),
        ),
        (
            _L + r"\.1\.global_rep\.\d+\.(?P<t>weight|bias)",
            lambda m: _p(m) + shift_stage(m, "stages.{layer}.1.norm.{t}"),
        ),
        (
            _L + r"\.1\.(?P<c>conv_proj|fusion)\.block\.(?P<m>conv|norm)\.(?P<t>\w+)",
            lambda m: (
                _p(m)
                + shift_stage(
                    m,
                    "stages.{layer}.1."
                    + ("conv_proj" if m["c"] == "conv_proj" else "conv_fusion")
                    + ".{m}.{t}",
                )
            ),
        ),
        (r"conv_1x1_exp\.block\.(?P<m>conv|norm)\.(?P<t>\w+)", r"conv_exp.\g<m>.\g<t>"),
        (r"classifier\.fc\.(?P<t>weight|bias)", r"head.fc.\g<t>"),
    ),
)


_FFN_V2 = {"0": "norm2", "1.block.conv": "mlp.fc1", "3.block.conv": "mlp.fc2"}

# MobileViT v2 (ml-cvnets v0.2): the same stem and MV2 blocks, the separable-attention block
BACKBONE_RULES_V2 = RuleSet(
    "cvnets (v2)",
    (
        *BACKBONE_RULES.rules[:2],  # stem, MV2 blocks
        (
            _L + r"\.1\.local_rep\.0\.block\.(?P<m>conv|norm)\.(?P<t>\w+)",
            lambda m: _p(m) + shift_stage(m, "stages.{layer}.1.conv_kxk.{m}.{t}"),
        ),
        (
            _L + r"\.1\.local_rep\.1\.block\.conv\.weight",
            lambda m: _p(m) + shift_stage(m, "stages.{layer}.1.conv_1x1.weight"),
        ),
        (
            _L + r"\.1\.global_rep\.(?P<j>\d+)\.pre_norm_attn\.0\.(?P<t>weight|bias)",
            lambda m: _p(m) + shift_stage(m, "stages.{layer}.1.transformer.{j}.norm1.{t}"),
        ),
        (
            _L
            + r"\.1\.global_rep\.(?P<j>\d+)\.pre_norm_attn\.1\.(?P<w>qkv_proj|out_proj)\.block\.conv\.(?P<t>weight|bias)",
            lambda m: _p(m) + shift_stage(m, "stages.{layer}.1.transformer.{j}.attn.{w}.{t}"),
        ),
        (
            _L
            + r"\.1\.global_rep\.(?P<j>\d+)\.pre_norm_ffn\.(?P<i>0|1\.block\.conv|3\.block\.conv)\.(?P<t>weight|bias)",
            lambda m: _p(m) + shift_stage(m, "stages.{layer}.1.transformer.{j}." + _FFN_V2[m["i"]] + ".{t}"),
        ),
        (
            _L + r"\.1\.global_rep\.\d+\.(?P<t>weight|bias)",
            lambda m: _p(m) + shift_stage(m, "stages.{layer}.1.norm.{t}"),
        ),
        (
            _L + r"\.1\.conv_proj\.block\.(?P<m>conv|norm)\.(?P<t>\w+)",
            lambda m: _p(m) + shift_stage(m, "stages.{layer}.1.conv_proj.{m}.{t}"),
        ),
        (r"classifier\.1\.(?P<t>weight|bias)", r"head.fc.\g<t>"),
    ),
)


def is_v2(state_dict: dict[str, torch.Tensor]) -> bool:
    """A MobileViT v2 checkpoint (separable attention) rather than v1."""
    return any(".pre_norm_attn." in k for k in state_dict)


def channel_order(state_dict: dict[str, torch.Tensor]) -> str:
    """The input the weights were trained on: v0.1 (v1) read images with OpenCV (BGR); v0.2,
    which released v2, reads them with PIL (RGB)."""
    return "RGB" if is_v2(state_dict) else CHANNEL_ORDER


def is_cvnets(state_dict: dict[str, torch.Tensor]) -> bool:
    return "conv_1.block.conv.weight" in state_dict or "encoder.conv_1.block.conv.weight" in state_dict


def convert_classifier(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """cvnets ``MobileViT`` / ``MobileViTv2`` classifier state dict -> ours."""
    return (BACKBONE_RULES_V2 if is_v2(state_dict) else BACKBONE_RULES).apply(state_dict)


SEG_HEAD_RULES = RuleSet(
    "cvnets",
    (
        (
            r"seg_head\.aspp\.aspp_layer\.convs\.4\.aspp_pool\.conv_1x1\.block\.(?P<m>conv|norm)\.(?P<t>\w+)",
            r"aspp.convs.4.conv.\g<m>.\g<t>",
        ),
        (
            r"seg_head\.aspp\.aspp_layer\.convs\.(?P<i>[0-3])\.block\.(?P<m>conv|norm)\.(?P<t>\w+)",
            r"aspp.convs.\g<i>.\g<m>.\g<t>",
        ),
        (
            r"seg_head\.aspp\.aspp_layer\.project\.block\.(?P<m>conv|norm)\.(?P<t>\w+)",
            r"aspp.project.\g<m>.\g<t>",
        ),
        (r"seg_head\.classifier\.classifier\.block\.conv\.(?P<t>weight|bias)", r"classifier.\g<t>"),  # v0.1
        (r"seg_head\.classifier\.block\.conv\.(?P<t>weight|bias)", r"classifier.\g<t>"),  # v0.2
    ),
)


def task_of(state_dict: dict[str, torch.Tensor]) -> str:
    if any(k.startswith("seg_head.") for k in state_dict):
        return "segmentation"
    if any(k.startswith(("ssd_heads.", "extra_layers.")) for k in state_dict):
        return "detection"
    return "classification"


_EXTRA = {"64": "0", "128": "1", "256": "2"}

DET_HEAD_RULES = RuleSet(
    "cvnets",
    (
        (
            r"extra_layers\.os_(?P<os>64|128|256)\.(?P<c>dw|pw)_conv\.block\.(?P<m>conv|norm)\.(?P<t>\w+)",
            lambda m: f"backbone.extra.{_EXTRA[m['os']]}.{m['c']}.{m['m']}.{m['t']}",
        ),
        (r"extra_layers\.os_-1\.1\.block\.conv\.weight", "backbone.pool.conv.weight"),
        (
            r"ssd_heads\.(?P<i>\d+)\.proj_layer\.block\.(?P<m>conv|norm)\.(?P<t>\w+)",
            r"head.levels.\g<i>.proj.\g<m>.\g<t>",
        ),
        (
            r"ssd_heads\.(?P<i>\d+)\.loc_cls_layer\.dw_conv\.block\.(?P<m>conv|norm)\.(?P<t>\w+)",
            r"head.levels.\g<i>.predict.dw.\g<m>.\g<t>",
        ),
        (
            r"ssd_heads\.(?P<i>\d+)\.loc_cls_layer\.pw_conv\.block\.conv\.(?P<t>weight|bias)",
            r"head.levels.\g<i>.predict.pw.\g<t>",
        ),
        (
            r"ssd_heads\.(?P<i>\d+)\.loc_cls_layer\.block\.conv\.(?P<t>weight|bias)",
            r"head.levels.\g<i>.predict.\g<t>",
        ),
    ),
)


def convert(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str]:
    """Any supported cvnets MobileViT checkpoint -> (ours, task)."""
    task = task_of(state_dict)
    rules = BACKBONE_RULES_V2 if is_v2(state_dict) else BACKBONE_RULES
    if task == "classification":
        return rules.apply(state_dict), task
    head_prefix = "seg_head." if task == "segmentation" else ("ssd_heads.", "extra_layers.")
    head = {k: v for k, v in state_dict.items() if k.startswith(head_prefix)}
    body = rules.apply({k: v for k, v in state_dict.items() if not k.startswith(head_prefix)})
    if task == "segmentation":  # the auxiliary head (a training loss on L4, v0.2) is not part of the model
        return {**body, **SEG_HEAD_RULES.apply(head, ignore=(r"seg_head\.aux_head\..*",))}, task
    # detection: the backbone sits inside the feature pyramid, as backbone.body
    body = {"backbone.body." + k.removeprefix("backbone."): v for k, v in body.items()}
    return {**body, **DET_HEAD_RULES.apply(head)}, task
