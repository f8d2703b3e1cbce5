"""Apple ml-cvnets checkpoints (v0.1: v1; v0.2: v2; and MobileViTv3's) <-> this package's key layout.

Layout (the official checkpoints' key names): ``conv_1`` stem, ``layer_{1..5}`` stages with
``block.{exp_1x1,conv_3x3,red_1x1}`` MV2 blocks, MobileViT blocks with ``local_rep``,
``global_rep`` (pre-norm transformer layers + a final LayerNorm), ``conv_proj`` and ``fusion``,
then ``conv_1x1_exp`` and ``classifier.fc``. Detection and segmentation models prefix the
backbone with ``encoder.``. The weights were trained on BGR images.
"""

from __future__ import annotations

import re

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
    """An ml-cvnets checkpoint: its stem key, bare (classifier) or under ``encoder.`` (seg / det)."""
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
    """The task of an ml-cvnets state dict: ``segmentation`` (``seg_head.``), ``detection``
    (``ssd_heads.`` / ``extra_layers.``) or ``classification``."""
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


# ------------------------------------------------------------------ ours -> cvnets
_MV2_OUT = {ours: theirs for theirs, ours in _MV2.items()}
_FFN_OUT = {"norm2": "0", "mlp.fc1": "1", "mlp.fc2": "4"}
_FFN_V2_OUT = {"norm2": "0", "mlp.fc1": "1.block.conv", "mlp.fc2": "3.block.conv"}


def _depths(state_dict: dict[str, torch.Tensor]) -> dict[str, int]:
    """Transformer layers per MobileViT stage (the final norm's index in ``global_rep``)."""
    depths: dict[str, int] = {}
    for k in state_dict:
        m = re.match(r"(?:backbone\.)?stages\.(\d)\.1\.transformer\.(\d+)\.", k)
        if m:
            depths[m[1]] = max(depths.get(m[1], 0), int(m[2]) + 1)
    return depths


def _out_rules(depths: dict[str, int], v2: bool) -> RuleSet:
    """Our keys (a classifier, or a segmenter's ``backbone.``) -> cvnets' (``encoder.`` for the latter)."""
    pre = r"(?P<b>(backbone\.)?)"
    conv = r"(?P<m>conv|norm)\.(?P<t>\w+)"

    def lay(m: re.Match[str]) -> str:
        return f"{'encoder.' if m['b'] else ''}layer_{int(m['i']) + 1}"

    blk = pre + r"stages\.(?P<i>\d)\.1\."
    common = (
        (pre + r"stem\." + conv, lambda m: f"{'encoder.' if m['b'] else ''}conv_1.block.{m['m']}.{m['t']}"),
        (
            pre + r"stages\.(?P<i>\d)\.(?P<j>\d+)\.(?P<c>expand|dw|project)\." + conv,
            lambda m: f"{lay(m)}.{m['j']}.block.{_MV2_OUT[m['c']]}.block.{m['m']}.{m['t']}",
        ),
        (blk + r"norm\.(?P<t>weight|bias)", lambda m: f"{lay(m)}.1.global_rep.{depths[m['i']]}.{m['t']}"),
        (blk + r"conv_proj\." + conv, lambda m: f"{lay(m)}.1.conv_proj.block.{m['m']}.{m['t']}"),
    )
    if v2:
        block = (
            (blk + r"conv_kxk\." + conv, lambda m: f"{lay(m)}.1.local_rep.0.block.{m['m']}.{m['t']}"),
            (blk + r"conv_1x1\.weight", lambda m: f"{lay(m)}.1.local_rep.1.block.conv.weight"),
            (
                blk + r"transformer\.(?P<j>\d+)\.norm1\.(?P<t>weight|bias)",
                lambda m: f"{lay(m)}.1.global_rep.{m['j']}.pre_norm_attn.0.{m['t']}",
            ),
            (
                blk + r"transformer\.(?P<j>\d+)\.attn\.(?P<w>qkv_proj|out_proj)\.(?P<t>weight|bias)",
                lambda m: f"{lay(m)}.1.global_rep.{m['j']}.pre_norm_attn.1.{m['w']}.block.conv.{m['t']}",
            ),
            (
                blk + r"transformer\.(?P<j>\d+)\.(?P<w>norm2|mlp\.fc1|mlp\.fc2)\.(?P<t>weight|bias)",
                lambda m: f"{lay(m)}.1.global_rep.{m['j']}.pre_norm_ffn.{_FFN_V2_OUT[m['w']]}.{m['t']}",
            ),
            (r"head\.fc\.(?P<t>weight|bias)", r"classifier.1.\g<t>"),
        )
    else:
        block = (
            (
                blk + r"conv_local\." + conv,
                lambda m: f"{lay(m)}.1.local_rep.conv_3x3.block.{m['m']}.{m['t']}",
            ),
            (blk + r"conv_in\.weight", lambda m: f"{lay(m)}.1.local_rep.conv_1x1.block.conv.weight"),
            (
                blk + r"transformer\.(?P<j>\d+)\.norm1\.(?P<t>weight|bias)",
                lambda m: f"{lay(m)}.1.global_rep.{m['j']}.pre_norm_mha.0.{m['t']}",
            ),
            (
                blk + r"transformer\.(?P<j>\d+)\.attn\.(?P<w>qkv|proj)\.(?P<t>weight|bias)",
                lambda m: (
                    f"{lay(m)}.1.global_rep.{m['j']}.pre_norm_mha.1."
                    f"{'qkv_proj' if m['w'] == 'qkv' else 'out_proj'}.{m['t']}"
                ),
            ),
            (
                blk + r"transformer\.(?P<j>\d+)\.(?P<w>norm2|mlp\.fc1|mlp\.fc2)\.(?P<t>weight|bias)",
                lambda m: f"{lay(m)}.1.global_rep.{m['j']}.pre_norm_ffn.{_FFN_OUT[m['w']]}.{m['t']}",
            ),
            (blk + r"conv_fusion\." + conv, lambda m: f"{lay(m)}.1.fusion.block.{m['m']}.{m['t']}"),
            (r"conv_exp\." + conv, r"conv_1x1_exp.block.\g<m>.\g<t>"),
            (r"head\.fc\.(?P<t>weight|bias)", r"classifier.fc.\g<t>"),
        )
    return RuleSet("mobilevit -> cvnets", (*common, *block))


def seg_head_out(v2: bool) -> RuleSet:
    """Our DeepLabv3 head -> cvnets' ``seg_head`` (its v0.1 classifier key for v1, v0.2's for v2)."""
    classifier = "seg_head.classifier.block.conv" if v2 else "seg_head.classifier.classifier.block.conv"
    return RuleSet(
        "mobilevit -> cvnets",
        (
            (
                r"aspp\.convs\.4\.conv\.(?P<m>conv|norm)\.(?P<t>\w+)",
                r"seg_head.aspp.aspp_layer.convs.4.aspp_pool.conv_1x1.block.\g<m>.\g<t>",
            ),
            (
                r"aspp\.convs\.(?P<i>[0-3])\.(?P<m>conv|norm)\.(?P<t>\w+)",
                r"seg_head.aspp.aspp_layer.convs.\g<i>.block.\g<m>.\g<t>",
            ),
            (
                r"aspp\.project\.(?P<m>conv|norm)\.(?P<t>\w+)",
                r"seg_head.aspp.aspp_layer.project.block.\g<m>.\g<t>",
            ),
            (r"classifier\.(?P<t>weight|bias)", classifier + r".\g<t>"),
        ),
    )


def from_ours(state_dict: dict[str, torch.Tensor], v2: bool, task: str) -> dict[str, torch.Tensor]:
    """Our classifier or DeepLabv3 state dict -> an ml-cvnets checkpoint's (v2: the v0.2 layout).

    Args:
        state_dict: our tensors; a DeepLabv3's backbone keys under ``backbone.``.
        v2: a MobileViT v2 (the v0.2 layout) rather than v1 (v0.1).
        task: ``classification``; anything else is taken as segmentation (``aspp.`` /
            ``classifier.`` go to cvnets' ``seg_head``).

    Returns:
        The tensors under cvnets' keys (the channel order is not changed).
    """
    rules = _out_rules(_depths(state_dict), v2)
    if task == "classification":
        return rules.apply(state_dict)
    head_keys = ("aspp.", "classifier.")
    head = {k: v for k, v in state_dict.items() if k.startswith(head_keys)}
    body = rules.apply({k: v for k, v in state_dict.items() if not k.startswith(head_keys)})
    return {**body, **seg_head_out(v2).apply(head)}
