"""MobileViT v2: the seven widths exact to timm / transformers / ml-cvnets, the block's pieces,
conversion of each peer's layout, and the backbone contract."""

import pytest
import torch
import torch.nn.functional as F
from _utils import FIXTURES_V2, max_diff, randomize

from mobilevit import create_model
from mobilevit.bench import count_params
from mobilevit.cli import main
from mobilevit.loading import load_model
from mobilevit.models.blocks import set_patch_layout
from mobilevit.models.mobilevitv2 import WIDTHS, fold_patches_v2, unfold_patches_v2
from mobilevit.models.patch_layouts import fold_v2_nhwc, unfold_v2_nhwc
from mobilevit.weights.convert import convert_state_dict, detect_source

PARAMS = {  # at 1000 classes: timm and transformers agree
    "050": 1_370_593, "075": 2_866_009, "100": 4_901_841, "125": 7_478_089,
    "150": 10_594_753, "175": 14_251_833, "200": 18_449_329,
}  # fmt: skip


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return max_diff(a, b) / b.abs().max().item()


@pytest.mark.parametrize("width", list(WIDTHS))
def test_parameter_counts_and_channels(width):
    model = create_model(f"mobilevitv2_{width}")
    assert count_params(model) == PARAMS[width]
    assert len(model.state_dict()) == 269
    assert model.feature_info[-1].channels == int(512 * WIDTHS[width]) and model.num_features == int(
        512 * WIDTHS[width]
    )


def test_unfold_fold_are_f_unfold_and_f_fold():
    x = torch.randn(2, 6, 8, 12)
    tokens = unfold_patches_v2(x, 2, 2)
    ref = F.unfold(x, kernel_size=2, stride=2).reshape(2, 6, 4, -1)  # [B, d, P, N]
    assert torch.equal(tokens, ref)
    assert torch.equal(fold_patches_v2(tokens, 2, 2, 4, 6), x)
    assert torch.equal(F.fold(ref.reshape(2, 24, -1), (8, 12), kernel_size=2, stride=2), x)
    # the one-copy NHWC way: the same tokens from either memory format, folded back channels-last
    for inp in (x, x.contiguous(memory_format=torch.channels_last)):
        assert torch.equal(unfold_v2_nhwc(inp, 2, 2), ref)
    folded = fold_v2_nhwc(ref, 2, 2, 4, 6)
    assert torch.equal(folded, x) and folded.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(unfold_v2_nhwc(x, 4, 2), unfold_patches_v2(x, 4, 2))  # non-square patches


@pytest.mark.parametrize("name", ["mobilevitv2_050", "mobilevitv3_050"])
def test_v2_blocks_take_every_patch_layout(name):
    model = randomize(create_model(name)).eval()
    x = torch.rand(1, 3, 96, 80)  # 80: resized up to the patch grid in the last stage
    with torch.no_grad():
        ref = model(x)
        for layout in ("nhwc", "pixels", "nchw"):  # "pixels": the reference way (no pixel-order form)
            assert set_patch_layout(model, layout) == 3
            assert max_diff(model(x), ref) <= 1e-5


@pytest.mark.parametrize("width", ["050", "100", "200"])
def test_equal_to_timm_at_three_sizes(width):
    timm = pytest.importorskip("timm")
    ref = randomize(timm.create_model(f"mobilevitv2_{width}", pretrained=False)).eval()
    sd, order = convert_state_dict(ref.state_dict(), "timm")
    assert order == "RGB"
    model = create_model(f"mobilevitv2_{width}")
    model.load_state_dict(sd)
    model.eval()
    with torch.no_grad():
        for size, batch in (((224, 224), 1), ((256, 256), 2), ((200, 312), 3)):
            x = torch.rand(batch, 3, *size)
            assert rel(model(x), ref(x)) <= 1e-4, size


@pytest.mark.parametrize("width", [0.5, 1.0])
def test_transformers_equal_at_256_and_320x256_and_divergent_at_224(width):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.MobileViTV2Config(width_multiplier=width, num_labels=1000)
    ref = randomize(transformers.MobileViTV2ForImageClassification(cfg)).eval()
    sd = ref.state_dict()
    assert detect_source(sd) == "transformers"
    sd, order = convert_state_dict(sd, "transformers")
    assert order == "RGB"  # the weights are ml-cvnets v0.2's (docs/guides/weights.md: input convention)
    model = create_model({0.5: "mobilevitv2_050", 1.0: "mobilevitv2_100"}[width])
    model.load_state_dict(sd)
    model.eval()
    with torch.no_grad():
        for size in ((256, 256), (320, 256)):
            x = torch.rand(2, 3, *size)
            assert rel(model(x), ref(pixel_values=x).logits) <= 1e-4
        # transformers skips the resize of odd maps to the patch grid (224 -> a 7x7 L5): not copied
        x = torch.rand(2, 3, 224, 224)
        assert rel(model(x), ref(pixel_values=x).logits) > 1e-2


@pytest.mark.skipif(not FIXTURES_V2.is_dir(), reason=f"ml-cvnets v2 fixtures not found at {FIXTURES_V2}")
def test_cvnets_v2_checkpoint_reproduces_the_official_outputs(tmp_path, capsys):
    io = torch.load(FIXTURES_V2 / "mobilevitv2_050.io.pt", weights_only=True)
    out = tmp_path / "v2.safetensors"
    assert main(["convert", str(FIXTURES_V2 / "mobilevitv2_050.pt"), str(out)]) == 0
    assert "mobilevitv2_050 (1000 classes) from cvnets, takes RGB" in capsys.readouterr().out
    model, meta = load_model(out)
    assert meta.arch == "mobilevitv2_050" and meta.channel_order == "RGB"
    x = io["input"]
    with torch.no_grad():
        assert max_diff(model(x), io["output"]) <= 1e-4
        assert max_diff(model.forward_features(x), io["features"]) <= 1e-3
        for i, feats in enumerate(model.forward_stages(x)):
            assert max_diff(feats.mean((2, 3)), io["stage_channel_means"][f"out_l{i + 1}"]) <= 1e-4


def test_backbone_contract_and_output_stride():
    x = torch.rand(1, 3, 128, 128)
    for os_, reductions in ((32, [2, 4, 8, 16, 32]), (16, [2, 4, 8, 16, 16]), (8, [2, 4, 8, 8, 8])):
        model = create_model("mobilevitv2_050", output_stride=os_, features_only=True).eval()
        assert [f.reduction for f in model.feature_info] == reductions
        with torch.no_grad():
            outs = model.forward_stages(x)
        assert [o.shape[-1] for o in outs] == [128 // r for r in reductions]
    dilated = create_model("mobilevitv2_050", output_stride=16, features_only=True)
    assert dilated.stages[4][1].conv_kxk.conv.dilation == (
        2,
        2,
    )  # the v2 block's dw conv, as ml-cvnets / timm


def test_config_knobs_and_bad_values():
    m = create_model(
        "mobilevitv2_050", num_classes=7, depths=(1, 1, 1), attn_dims=(32, 48, 64), ffn_ratio=1.0
    )
    assert m.stages[2][1].transformer[0].mlp.fc1.out_channels == 32 and len(m.stages[3][1].transformer) == 1
    assert m(torch.rand(1, 3, 64, 64)).shape == (1, 7)
    bn = create_model("mobilevitv2_050", norm="batch_norm")
    assert isinstance(bn.stages[2][1].norm, torch.nn.BatchNorm2d)
    for bad, msg in (
        ({"depths": (2, 0, 3)}, "depths"),
        ({"norm": "rms"}, "norm"),
        ({"patch_size": (0, 2)}, "patch_size"),
    ):
        with pytest.raises(ValueError, match=msg):
            create_model("mobilevitv2_050", **bad)
    with pytest.raises(TypeError, match="unknown MobileViTv2Config field"):
        create_model("mobilevitv2_050", skip_connection=False)


def test_odd_sizes_are_resized_up_and_kept():
    model = create_model("mobilevitv2_050", features_only=True).eval()
    with torch.no_grad():
        outs = model.forward_stages(torch.rand(1, 3, 224, 224))
    assert [o.shape[-1] for o in outs] == [112, 56, 28, 14, 8]  # L5 sees 7 -> 8, as ml-cvnets and timm


def test_onnx_export_at_an_even_and_an_odd_size(tmp_path):
    pytest.importorskip("onnxruntime")
    from mobilevit.export import export_onnx, optimize_for_inference

    model = create_model("mobilevitv2_050").eval()
    x = torch.rand(2, 3, 256, 256)
    with torch.no_grad():
        assert max_diff(optimize_for_inference(model)(x), model(x)) <= 1e-4  # BN folded
    for size in ((256, 256), (224, 224)):  # the reshape unfold / fold: no col2im, opset 17
        report = export_onnx(model, tmp_path / f"v2_{size[0]}.onnx", size, dynamic_batch=True)
        assert all(c.max_abs_diff <= 1e-4 for c in report.checks)


@pytest.mark.slow
def test_coreml_conversion_of_the_classifier_and_the_segmenter(tmp_path):
    """Converts on Linux (running it needs macOS): GroupNorm and the separable attention map to MIL ops."""
    ct = pytest.importorskip("coremltools")
    from mobilevit.export.coreml import export_coreml

    for name, size, out in (
        ("mobilevitv2_050", (224, 224), "output"),
        ("deeplabv3_mobilevitv2_050", (256, 256), "output"),
    ):
        model = randomize(create_model(name, num_classes=5)).eval()
        report = export_coreml(model, tmp_path / f"{name}.mlpackage", size)
        spec = ct.utils.load_spec(report.path)
        (inp,) = spec.description.input
        assert list(inp.type.multiArrayType.shape) == [1, 3, *size]
        assert [o.name for o in spec.description.output] == [out]


def _int8_close(got: torch.Tensor, ref: torch.Tensor) -> None:
    assert got.shape == ref.shape
    assert 0 < rel(got, ref) < 0.2  # moved by rounding, not far
    assert float(F.cosine_similarity(got, ref, dim=1).min()) > 0.97


@pytest.mark.slow
def test_both_int8_paths_quantize_v2_and_stay_close(tmp_path):
    """onnxruntime static QDQ (the norms stay fp32) and PyTorch's PT2E x86 int8 (uncompiled here)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("torchao")
    import onnx

    from mobilevit.export import export_onnx
    from mobilevit.export.int8 import quantize_int8
    from mobilevit.export.int8_torch import quantize_int8_torch
    from mobilevit.export.onnx import ort_session

    torch.manual_seed(0)
    model = randomize(create_model("mobilevitv2_050", num_classes=10)).eval()
    calib, val = torch.rand(16, 3, 96, 96), torch.rand(6, 3, 96, 96)
    with torch.no_grad():
        ref = model(val)
    export_onnx(model, tmp_path / "fp32.onnx", (96, 96), dynamic_batch=True)
    quantize_int8(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", calib.numpy())
    ops = [n.op_type for n in onnx.load(str(tmp_path / "int8.onnx")).graph.node]
    assert ops.count("QuantizeLinear") > 50 and "InstanceNormalization" in ops  # GroupNorm(1) kept fp32
    got = torch.from_numpy(ort_session(tmp_path / "int8.onnx").run(None, {"image": val.numpy()})[0])
    _int8_close(got, ref)

    quantized = quantize_int8_torch(model, calib, batch_size=8, compile=False)
    with torch.no_grad():
        _int8_close(quantized(val), ref)


@pytest.mark.skipif(not FIXTURES_V2.is_dir(), reason=f"ml-cvnets v2 fixtures not found at {FIXTURES_V2}")
def test_the_other_channel_order_is_a_flag_away(tmp_path, capsys):
    io = torch.load(FIXTURES_V2 / "mobilevitv2_050.io.pt", weights_only=True)
    out = tmp_path / "bgr.safetensors"
    src = str(FIXTURES_V2 / "mobilevitv2_050.pt")
    assert main(["convert", src, str(out), "--trained-on", "bgr"]) == 0  # transformers' belief
    assert "takes RGB input" in capsys.readouterr().out  # flipped so that RGB goes in
    model, _ = load_model(out)
    with torch.no_grad():  # RGB into the flipped stem = the original weights fed BGR
        assert (
            max_diff(
                model(io["input"]),
                create_model("mobilevitv2_050", pretrained=src).eval()(io["input"].flip(1)),
            )
            <= 1e-4
        )


# ------------------------------------------------------------------ DeepLabv3 on MobileViT v2
SEG_PARAMS = {  # at 21 classes, without ml-cvnets' training-only aux head (as transformers counts)
    "050": 6_242_318, "075": 9_510_278, "100": 13_318_654, "125": 17_667_446,
    "150": 22_556_654, "175": 27_986_278, "200": 33_956_318,
}  # fmt: skip


@pytest.mark.parametrize("width", list(WIDTHS))
def test_deeplabv3_v2_parameter_counts(width):
    model = create_model(f"deeplabv3_mobilevitv2_{width}")
    assert count_params(model) == SEG_PARAMS[width]
    assert model.output_stride == 16 and model.aspp.project.conv.out_channels == 512 and model.align_corners


def test_deeplabv3_v2_ade20k_settings_are_a_config():
    model = create_model("deeplabv3_mobilevitv2_050", num_classes=150, output_stride=8)
    assert model.output_stride == 8 and [b.conv.dilation[0] for b in list(model.aspp.convs)[1:4]] == [
        12,
        24,
        36,
    ]


@pytest.mark.skipif(not FIXTURES_V2.is_dir(), reason=f"ml-cvnets v2 fixtures not found at {FIXTURES_V2}")
def test_cvnets_v2_deeplabv3_reproduces_the_official_outputs(tmp_path, capsys):
    io = torch.load(FIXTURES_V2 / "deeplabv3_mobilevitv2_050.io.pt", weights_only=True)
    out = tmp_path / "seg.safetensors"
    assert main(["convert", str(FIXTURES_V2 / "deeplabv3_mobilevitv2_050.pt"), str(out)]) == 0
    assert "deeplabv3_mobilevitv2_050 (21 classes) from cvnets, takes RGB" in capsys.readouterr().out
    model, meta = load_model(out)
    assert meta.task == "segmentation"
    x = io["input"]
    with torch.no_grad():
        assert max_diff(model.forward_lowres(x), io["logits_lowres"]) <= 1e-4
        assert max_diff(model(x)[:, :, ::7, ::7], io["output_subsampled"]) <= 1e-4  # align_corners=True
        for i, feats in enumerate(model.backbone.forward_stages(x)):
            assert max_diff(feats.mean((2, 3)), io["stage_channel_means"][f"out_l{i + 1}"]) <= 1e-4


@pytest.mark.parametrize("width", [0.5, 1.0])
def test_transformers_v2_segmentation_converts_exactly_and_its_missing_dilation_is_not_copied(width):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.MobileViTV2Config(width_multiplier=width, num_labels=21, output_stride=16)
    ref = randomize(transformers.MobileViTV2ForSemanticSegmentation(cfg)).eval()
    sd, order = convert_state_dict(ref.state_dict(), "transformers")
    model = create_model({0.5: "deeplabv3_mobilevitv2_050", 1.0: "deeplabv3_mobilevitv2_100"}[width])
    model.load_state_dict(sd)
    model.eval()
    x = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        theirs = ref(pixel_values=x).logits  # [1, 21, 16, 16]
        ours = model.forward_lowres(x)
        # transformers never passes the dilation to the v2 block's dw conv at output stride 16
        conv = model.backbone.stages[4][1].conv_kxk.conv
        assert conv.dilation == (2, 2)
        assert rel(ours, theirs) > 1e-4
        conv.dilation, conv.padding = (1, 1), (1, 1)  # transformers' way: then the conversion is exact
        assert rel(model.forward_lowres(x), theirs) <= 1e-5


# ------------------------------------------------------------------ SSDLite on MobileViT v2
@pytest.mark.parametrize("width, params", [("050", 2_035_395), ("100", 5_608_883)])  # ml-cvnets' manifests
def test_ssdlite_v2_parameter_counts(width, params):
    assert count_params(create_model(f"ssdlite_mobilevitv2_{width}")) == params


@pytest.mark.skipif(not FIXTURES_V2.is_dir(), reason=f"ml-cvnets v2 fixtures not found at {FIXTURES_V2}")
def test_cvnets_v2_ssdlite_reproduces_the_official_outputs(tmp_path, capsys):
    io = torch.load(FIXTURES_V2 / "ssdlite_mobilevitv2_050.io.pt", weights_only=True)
    out = tmp_path / "ssd.safetensors"
    assert main(["convert", str(FIXTURES_V2 / "ssdlite_mobilevitv2_050.pt"), str(out)]) == 0
    assert "ssdlite_mobilevitv2_050 (81 classes) from cvnets, takes RGB" in capsys.readouterr().out
    model, meta = load_model(out)
    assert meta.task == "detection" and count_params(model) == io["num_parameters"]
    with torch.no_grad():
        logits, offsets = model.forward_raw(io["input"])  # RGB, as v0.2 trained
    torch.testing.assert_close(logits, io["confidences"], rtol=0, atol=1e-4)
    torch.testing.assert_close(offsets, io["locations"], rtol=0, atol=1e-4)
    torch.testing.assert_close(model.anchors(), io["anchors"], rtol=0, atol=1e-6)


# ------------------------------------------------------------------ training, and the bad inputs
@pytest.mark.parametrize(
    "task, name",
    [
        ("classification", "mobilevitv2_050"),
        ("segmentation", "deeplabv3_mobilevitv2_050"),
        ("detection", "ssdlite_mobilevitv2_050"),
    ],
)
def test_v2_trains_and_evaluates_through_the_task_machinery(task, name, tmp_path):
    from test_engine import cfg_for, overrides

    from mobilevit.data import write_shapes
    from mobilevit.data.synthetic import write_shapes_coco, write_shapes_voc
    from mobilevit.engine import train

    root = tmp_path / "data"
    data = {
        "classification": write_shapes(root / "cls", size=32, train_per_class=4, val_per_class=1),
        "segmentation": write_shapes_voc(root / "voc", size=64, n_train=16, n_val=3),
        "detection": write_shapes_coco(root / "coco", size=96, n_train=16, n_val=3, seed=1),
    }
    summary = train(cfg_for(task, data, tmp_path / "run", "optim.epochs=1", f"model.name={name}"))
    assert summary["stopped"] is None and summary["epochs_done"] == 1
    weights = tmp_path / "run" / "best.safetensors"
    assert main(["eval", str(weights), *overrides(task, data, tmp_path / "ev")[3:]]) == 0


def test_a_v1_checkpoint_into_a_v2_model_and_back_is_a_clear_error(tmp_path):
    from mobilevit.weights import CheckpointMismatchError, write_weights
    from mobilevit.weights.serialization import WeightsMeta

    v1 = write_weights(
        create_model("mobilevit_xxs").state_dict(), tmp_path / "v1.safetensors", WeightsMeta("mobilevit_xxs")
    )
    v2 = write_weights(
        create_model("mobilevitv2_050").state_dict(),
        tmp_path / "v2.safetensors",
        WeightsMeta("mobilevitv2_050"),
    )
    with pytest.raises(
        CheckpointMismatchError, match=r"v1.safetensors does not fit MobileViTv2 \(mobilevitv2_050\)"
    ):
        create_model("mobilevitv2_050", pretrained=v1)
    with pytest.raises(
        CheckpointMismatchError, match=r"v2.safetensors does not fit MobileViT \(mobilevit_xxs\)"
    ):
        create_model("mobilevit_xxs", pretrained=v2)


def test_widths_outside_the_releases_use_the_ml_cvnets_rounding():
    # timm rounds unreleased widths otherwise (stem int(32 * w) = 8 at 0.25): no timm file fits these
    assert create_model("mobilevitv2_050", width_multiplier=0.25).config.channels[0] == 16


def test_a_transformers_folder_of_another_model_type_is_a_clear_error(tmp_path, capsys):
    transformers = pytest.importorskip("transformers")
    vit = transformers.ViTModel(
        transformers.ViTConfig(
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            image_size=32,
            patch_size=16,
        )
    )
    vit.save_pretrained(tmp_path / "vit")
    out = tmp_path / "out.safetensors"
    assert main(["convert", str(tmp_path / "vit"), str(out)]) == 2
    assert "cannot tell which MobileViT layout this checkpoint uses" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(ValueError, match="cannot tell which MobileViT layout"):
        load_model(tmp_path / "vit")
