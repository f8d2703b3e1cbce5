"""MobileViT v3 (v3 on v1: XXS / XS / S; v3 on v2: 0.5 / 0.75 / 1.0): parameter counts and keys
against the reference code's manifests, its outputs on its own random weights, the heads on a v3
backbone, the config knobs and the exports."""

import json

import pytest
import torch
from _utils import FIXTURES_V3, max_diff, randomize

from mobilevit import create_model
from mobilevit.bench import count_params
from mobilevit.cli import main
from mobilevit.loading import infer_model_name, load_model
from mobilevit.models.mobilevitv3 import V3_LICENSE
from mobilevit.weights.convert import convert_state_dict
from mobilevit.weights.convert.cvnets import BACKBONE_RULES, BACKBONE_RULES_V2

V3 = (
    "mobilevitv3_xxs",
    "mobilevitv3_xs",
    "mobilevitv3_s",
    "mobilevitv3_050",
    "mobilevitv3_075",
    "mobilevitv3_100",
)
PARAMS = dict(zip(V3, (1_249_448, 2_490_360, 5_763_912, 1_429_985, 2_999_641, 5_139_409), strict=True))
needs_fixtures = pytest.mark.skipif(
    not FIXTURES_V3.is_dir(), reason=f"MobileViTv3 fixtures not found at {FIXTURES_V3}"
)


@pytest.mark.parametrize("name", V3)
def test_parameter_counts(name):
    assert count_params(create_model(name)) == PARAMS[name]


@needs_fixtures
@pytest.mark.parametrize("name", V3)
def test_manifests_map_onto_our_keys_with_the_same_shapes(name):
    manifest = json.loads((FIXTURES_V3 / f"{name}.keys.json").read_text())
    assert manifest["num_parameters"] == PARAMS[name]
    rules = BACKBONE_RULES_V2 if manifest["mobilevitv3_patch_dir"] == "MobileViTv3-v2" else BACKBONE_RULES
    mapped = {rules.rename(k): tuple(s) for k, s in manifest["state_dict"]}
    assert None not in mapped
    ours = create_model(name).state_dict()
    assert {k: tuple(v.shape) for k, v in ours.items()} == mapped
    # the shapes alone tell v3 from v1 / v2 (v3 keeps its frame's key names)
    fake = {k: torch.zeros(s) for k, s in manifest["state_dict"]}
    assert infer_model_name(convert_state_dict(fake, "cvnets")[0]) == name


@needs_fixtures
@pytest.mark.parametrize(("name", "order"), [("mobilevitv3_xxs", "BGR"), ("mobilevitv3_050", "RGB")])
def test_the_reference_checkpoints_reproduce_its_outputs(tmp_path, capsys, name, order):
    io = torch.load(FIXTURES_V3 / f"{name}.io.pt", weights_only=True)
    out = tmp_path / f"{name}.safetensors"
    assert main(["convert", str(FIXTURES_V3 / f"{name}.pt"), str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"{name} (1000 classes) from cvnets, takes RGB" in printed  # detected as v3, stem made RGB
    assert V3_LICENSE in printed  # the reference weights' licence is printed ...
    model, meta = load_model(out)
    assert meta.arch == name and meta.extra["license"] == V3_LICENSE  # ... and recorded
    x = io["input"].flip(1) if order == "BGR" else io["input"]  # v3 on v1 was trained on BGR
    with torch.no_grad():
        assert max_diff(model(x), io["output"]) <= 1e-4
        features = model.forward_features(x)
        assert max_diff(features, io["features"]) / io["features"].abs().max().item() <= 1e-5
        for i, feats in enumerate(model.forward_stages(x)):
            assert max_diff(feats.mean((2, 3)), io["stage_channel_means"][f"out_l{i + 1}"]) <= 1e-4
        if "out_l5_exp" in io["stage_channel_means"]:
            assert max_diff(features.mean((2, 3)), io["stage_channel_means"]["out_l5_exp"]) <= 1e-4


@needs_fixtures
def test_keeping_bgr_matches_the_reference_input_as_is(tmp_path):
    io = torch.load(FIXTURES_V3 / "mobilevitv3_xxs.io.pt", weights_only=True)
    sd = torch.load(FIXTURES_V3 / "mobilevitv3_xxs.pt", weights_only=True)
    converted, order = convert_state_dict(sd, "cvnets", to_rgb=False)
    assert order == "BGR"
    model = create_model("mobilevitv3_xxs").eval()
    model.load_state_dict(converted)
    with torch.no_grad():
        assert max_diff(model(io["input"]), io["output"]) <= 1e-4


def test_the_v3_block_is_three_config_fields_on_v1_and_one_on_v2():
    v1 = create_model("mobilevit_xxs")
    block = v1.stages[4][1]
    assert block.conv_fusion.conv.kernel_size == (3, 3) and block.conv_local.conv.groups == 1
    v3 = create_model("mobilevit_xxs", fusion="v3", fusion_residual=True, local_depthwise=True)
    block = v3.stages[4][1]
    assert block.conv_fusion.conv.kernel_size == (1, 1)
    assert block.conv_fusion.conv.in_channels == 96 + 80  # [local d, global C]
    assert block.conv_local.conv.groups == 80
    assert (
        create_model("mobilevit_xxs", fusion="v3", skip_connection=False)
        .stages[4][1]
        .conv_fusion.conv.in_channels
        == 80
    )
    v2 = create_model("mobilevitv2_050", fusion="v3").stages[4][1]
    assert v2.conv_proj.conv.in_channels == 2 * 128
    x = torch.rand(1, 3, 96, 96)
    for model in (v3, create_model("mobilevitv3_050")):
        assert model.eval()(x).shape == (1, 1000)
    with pytest.raises(ValueError, match="fusion must be 'v1' or 'v3'"):
        create_model("mobilevit_xxs", fusion="v2")
    with pytest.raises(ValueError, match="fusion must be 'v2' or 'v3'"):
        create_model("mobilevitv2_050", fusion="v1")


def test_odd_sizes_resize_as_their_frame_does():
    """v3 on v1 resizes to the patch grid and back (v1); v3 on v2 resizes up and keeps it (v2)."""
    x = torch.rand(1, 3, 200, 200)  # L5 at 7x7: odd
    for name in ("mobilevitv3_xxs", "mobilevitv3_050"):
        model = create_model(name).eval()
        feats = model.forward_stages(x)
        assert feats[-1].shape[-1] == (7 if name.endswith("xxs") else 8)


@pytest.mark.parametrize("name", ["mobilevitv3_xxs", "mobilevitv3_050"])
def test_segmentation_and_detection_take_a_v3_backbone(name):
    seg = create_model(f"deeplabv3_{name}").eval()
    det = create_model(f"ssdlite_{name}").eval()
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        assert seg(x).shape == (1, 21, 128, 128)
        det_in = torch.rand(1, 3, *det.ssd_config.image_size)
        cls_logits, box_deltas = det.forward_raw(det_in)
    assert cls_logits.shape[:2] == box_deltas.shape[:2] and box_deltas.shape[-1] == 4
    classifier = create_model(name)
    backbone = seg.mobilevit_backbone()
    assert [f.channels for f in backbone.feature_info] == [f.channels for f in classifier.feature_info]


@pytest.mark.parametrize("name", ["mobilevitv3_xxs", "mobilevitv3_050"])
def test_onnx_export_at_two_sizes(tmp_path, name):
    pytest.importorskip("onnxruntime")
    from mobilevit.export import export_onnx, optimize_for_inference

    model = randomize(create_model(name)).eval()
    x = torch.rand(2, 3, 256, 256)
    with torch.no_grad():
        assert max_diff(optimize_for_inference(model)(x), model(x)) <= 1e-4  # BN folded
    for size in ((256, 256), (224, 160)):
        report = export_onnx(model, tmp_path / f"{name}_{size[0]}.onnx", size, dynamic_batch=True)
        assert all(c.max_abs_diff <= 1e-4 for c in report.checks)


@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
@pytest.mark.parametrize("name", ["mobilevitv3_xxs", "mobilevitv3_050"])
def test_the_xnnpack_graph_of_v3_is_the_same_math(name, layout):
    from mobilevit.export.onnx import export_core
    from mobilevit.export.xnnpack_graph import shape_for_xnnpack

    model = randomize(create_model(name)).eval()
    fast, reference, _ = export_core(model, patch_layout=layout)
    assert shape_for_xnnpack(fast) > 0
    x = torch.rand(2, 3, 128, 96)
    with torch.no_grad():
        assert max_diff(fast(x), reference(x)) <= 1e-4
