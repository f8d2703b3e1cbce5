"""ExecuTorch (XNNPACK), LiteRT and OpenVINO exports: each file checked in its own runtime against
eager PyTorch (fp32 at two sizes, one not a multiple of 32), int8 / bf16 agreeing on a small model
trained here on the digits, the XNNPACK graph wholly delegated, and the bad inputs refused."""

import sys

import numpy as np
import pytest
import torch
from _utils import REPO, max_diff, randomize

pytest.importorskip("executorch")
pytest.importorskip("litert_torch")
pytest.importorskip("openvino")

from mobilevit import create_model  # noqa: E402
from mobilevit.cli import main  # noqa: E402
from mobilevit.export import ExportError, export_executorch, export_litert, export_openvino  # noqa: E402
from mobilevit.export.executorch import executorch_graph, load_executorch, quantize_for_xnnpack  # noqa: E402
from mobilevit.export.litert import load_litert  # noqa: E402
from mobilevit.export.openvino import load_openvino  # noqa: E402
from mobilevit.export.optimize import optimize_for_inference  # noqa: E402
from mobilevit.export.xnnpack_graph import (  # noqa: E402
    GroupNorm1,
    TokenLayerNorm,
    fold_norm_affine,
    shape_for_xnnpack,
)
from mobilevit.weights.serialization import save_weights  # noqa: E402

pytestmark = pytest.mark.runtimes

SIZES = ((128, 128), (100, 72))  # the second: not a multiple of 32 (the blocks resize their maps)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """MobileViT v2-0.5 with one attention layer per stage, trained on the digits for 4 epochs at
    48 px (~95% top-1 in ~35 s; ExecuTorch's int8 lowering of a full-depth model takes minutes):
    (weights file, model, classes)."""
    from mobilevit.engine import load_config, train
    from mobilevit.loading import class_names, load_model

    out = tmp_path_factory.mktemp("digits_run")
    cfg = load_config(
        REPO / "configs" / "demo_digits.yaml",
        [
            "model.name=mobilevitv2_050",
            "model.overrides={depths: [1, 1, 1]}",
            "optim.epochs=4",
            "optim.warmup_iters=10",
            "data.img_size=48",
            "data.eval_resize=48",
            "data.multiscale=false",
            "data.num_workers=0",
            f"run.out_dir={out}",
            "run.progress=false",
        ],
    )
    train(cfg)
    weights = out / "best.safetensors"
    model, meta = load_model(weights)
    return weights, model.eval(), class_names(meta)


@pytest.mark.parametrize("name", ["mobilevit_xxs", "mobilevitv2_050", "deeplabv3_mobilevit_xxs"])
def test_the_xnnpack_graph_is_the_same_math(name):
    model = randomize(create_model(name, num_classes=7)).eval()
    fast = optimize_for_inference(model, channels_last=False)
    assert shape_for_xnnpack(fast) > 0
    norms = [m for m in fast.modules() if isinstance(m, (TokenLayerNorm, GroupNorm1))]
    # every transformer norm's affine went into the projection that reads it
    assert norms and all(n.weight is None and n.bias is None for n in norms)
    for size in SIZES:
        x = torch.rand(2, 3, *size)
        with torch.no_grad():
            assert max_diff(fast(x), model(x)) <= 1e-4


@pytest.mark.slow
def test_the_int8_graph_keeps_silu_in_int8():
    # SiLU as an nn.SiLU module is left unannotated by XNNPACKQuantizer: a float island with a
    # dequantize before and a quantize after it. Written out as x * sigmoid(x), the multiply is
    # quantized: every activation's result goes straight into a quantize op.
    model = randomize(create_model("mobilevit_xxs", num_classes=7)).eval()
    fast = executorch_graph(model)[0]
    assert not any(isinstance(m, torch.nn.SiLU) for m in fast.modules())
    calib = np.random.default_rng(0).random((4, 3, 64, 64), dtype=np.float32)
    graph = quantize_for_xnnpack(fast, torch.rand(1, 3, 64, 64), calib).graph

    def only_user(node: torch.fx.Node) -> torch.fx.Node:
        assert len(node.users) == 1, node.users
        return next(iter(node.users))

    def name(node: torch.fx.Node) -> str:
        return getattr(node.target, "__name__", str(node.target))

    sigmoids = [n for n in graph.nodes if n.target == torch.ops.aten.sigmoid.default]
    assert len(sigmoids) == sum(isinstance(m, torch.nn.SiLU) for m in model.modules()) > 0
    for sigmoid in sigmoids:  # dq -> sigmoid -> q -> dq -> mul -> q
        assert name(sigmoid.args[0]) == "dequantize_per_tensor.default"
        quantized = only_user(sigmoid)
        assert name(quantized) == "quantize_per_tensor.default"
        mul = only_user(only_user(quantized))
        assert mul.target == torch.ops.aten.mul.Tensor
        # x * sigmoid(x): both factors dequantized from int8, x from the same tensor sigmoid read
        assert {a.args[0] for a in mul.args} == {sigmoid.args[0].args[0], quantized}
        assert name(only_user(mul)) == "quantize_per_tensor.default"


def test_a_norm_affine_folds_only_into_a_plain_projection():
    norm, linear = torch.nn.LayerNorm(6), torch.nn.Linear(6, 4, bias=False)
    torch.nn.init.normal_(norm.weight), torch.nn.init.normal_(norm.bias)
    x = torch.randn(3, 6)
    with torch.no_grad():
        want = linear(norm(x))
        assert fold_norm_affine(norm, linear) and norm.weight is None and linear.bias is not None
        assert max_diff(linear(norm(x)), want) <= 1e-5
    norm3 = torch.nn.GroupNorm(1, 6)
    assert not fold_norm_affine(norm3, torch.nn.Conv2d(6, 4, 3)) and norm3.weight is not None
    norm2d = torch.nn.LayerNorm((2, 3))  # an affine over more than the channel dim
    assert not fold_norm_affine(norm2d, torch.nn.Linear(3, 4)) and norm2d.weight is not None


# ExecuTorch's lowering takes ~30 s per model here whatever the input size, so each export counts:
# v1 at the odd size here and at 48 px in the CLI test, v2 (one attention layer per stage) at 128
@pytest.mark.slow
def test_executorch_classifiers_are_wholly_delegated_and_equal(tmp_path):
    cases = (("mobilevit_xxs", {}, SIZES[1]), ("mobilevitv2_050", {"depths": (1, 1, 1)}, SIZES[0]))
    for name, overrides, size in cases:
        model = randomize(create_model(name, num_classes=10, **overrides)).eval()
        report = export_executorch(model, tmp_path / f"{name}.pte", size)
        assert report.delegation.portable_ops == {} and report.delegation.delegated_fraction == 1.0, (
            report.delegation.portable_ops
        )
        assert report.delegation.delegate_pieces == 1 and report.checks[0].max_abs_diff <= 1e-4
    x = torch.rand(1, 3, *size)
    (got,) = load_executorch(report.path)(x.numpy())
    with torch.no_grad():
        assert np.abs(got - model(x).numpy()).max() <= 1e-4


@pytest.mark.slow
def test_executorch_detector_core(tmp_path):
    det = create_model("ssdlite_mobilevit_xxs", num_classes=4, ssd={"image_size": (128, 128)}).eval()
    report = export_executorch(det, tmp_path / "det.pte", (128, 128), batch=2)
    assert report.outputs == ["scores", "boxes"] and report.checks[0].max_abs_diff <= 1e-4
    assert report.delegation.delegated_fraction > 0.9


def test_ops_xnnpack_cannot_take_are_named():
    """A sum over the last dim has no XNNPACK config: it stays on the portable kernels, by name."""
    from mobilevit.export.executorch import lower_to_xnnpack

    class ConvThenSum(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x).sum(dim=-1)

    _, report = lower_to_xnnpack(ConvThenSum().eval(), torch.rand(1, 3, 8, 8))
    assert any("sum" in op for op in report.portable_ops), report.portable_ops
    assert 0 < report.delegated_fraction < 1 and report.delegate_pieces == 1


@pytest.mark.slow
def test_litert_classifiers_and_segmenter(tmp_path):
    cases = (
        ("mobilevit_xxs", {}, SIZES[1]),
        ("mobilevitv2_050", {"depths": (1, 1, 1)}, SIZES[0]),
        ("deeplabv3_mobilevit_xxs", {}, SIZES[0]),
    )
    for name, overrides, size in cases:
        model = randomize(create_model(name, num_classes=10, **overrides)).eval()
        report = export_litert(model, tmp_path / f"{name}_{size[0]}.tflite", size)
        assert report.checks[0].max_abs_diff <= 1e-4, name
    x = torch.rand(1, 3, *size)
    (got,) = load_litert(report.path)(x.numpy())
    with torch.no_grad():
        assert np.abs(got - model(x).numpy()).max() <= 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mobilevit_xxs", "mobilevitv2_050", "deeplabv3_mobilevitv2_050"])
def test_openvino_f32_equal_at_two_sizes(tmp_path, name):
    model = randomize(create_model(name, num_classes=10)).eval()
    for size in SIZES:
        report = export_openvino(model, tmp_path / f"{name}_{size[0]}.xml", size, batch=2)
        assert report.checks[0].max_abs_diff <= 1e-4 and report.inference_precision == "f32"
    run = load_openvino(report.path)
    x = torch.rand(2, 3, *SIZES[1])
    with torch.no_grad():
        assert np.abs(run(x.numpy())[0] - model(x).numpy()).max() <= 1e-4


def test_openvino_detector_core(tmp_path):
    det = create_model("ssdlite_mobilevitv2_050", num_classes=4, ssd={"image_size": (128, 128)}).eval()
    report = export_openvino(det, tmp_path / "det.xml", (128, 128))
    assert report.outputs == ["scores", "boxes"] and report.checks[0].max_abs_diff <= 1e-4


@pytest.mark.slow
def test_int8_and_bf16_agree_with_fp32_on_a_trained_model(tmp_path, trained):
    _, model, classes = trained
    common = dict(
        img_size=(48, 48),
        data="digits",
        calib_images=32,
        model_classes=classes,
        max_drop=5.0,
        min_agreement=0.95,
    )
    reports = {
        "executorch": export_executorch(model, tmp_path / "m.pte", int8=True, **common),
        "openvino": export_openvino(model, tmp_path / "m.xml", int8=True, **common),
        "openvino_bf16": export_openvino(model, tmp_path / "bf16.xml", precision="bf16", **common),
        "openvino_int8_bf16": export_openvino(
            model, tmp_path / "i8b.xml", int8=True, precision="bf16", **common
        ),  # the ops NNCF leaves unquantized in bf16
    }
    for key, r in reports.items():
        f = r.accuracy
        assert f.top1_agreement >= 0.95, (key, f)
        assert f.fp32_top1 > 0.5 and abs(f.top1 - f.fp32_top1) < 0.05, (key, f)
    assert reports["executorch"].delegation.portable_ops == {}, reports["executorch"].delegation.portable_ops
    # bf16 is judged as what OpenVINO computed here: f32 on a CPU without native bf16, and it says so
    from mobilevit.export.openvino import cpu_has_bf16

    bf16 = reports["openvino_bf16"]
    assert bf16.accuracy.computed_as == bf16.inference_precision == ("bf16" if cpu_has_bf16() else "f32")


@pytest.mark.slow
def test_a_failed_check_deletes_the_file_and_says_by_how_much(tmp_path, trained):
    _, model, classes = trained
    with pytest.raises(
        ExportError, match=r"agrees with fp32 on [01]\.\d+ of the 360 digits validation images, below 1\.01"
    ):
        export_openvino(
            model, tmp_path / "m.xml", (48, 48), precision="bf16", data="digits", min_agreement=1.01
        )
    assert not (tmp_path / "m.xml").exists() and not (tmp_path / "m.bin").exists()
    model = randomize(create_model("mobilevit_xxs", num_classes=3)).eval()
    with pytest.raises(
        ExportError, match=r"OpenVINO disagrees .* max abs diff .* > 1e-12; .*f.xml was deleted"
    ):
        export_openvino(model, tmp_path / "f.xml", (64, 64), atol=1e-12)
    assert not (tmp_path / "f.xml").exists() and not (tmp_path / "f.bin").exists()


@pytest.mark.slow
def test_export_cli_for_the_three_runtimes(tmp_path, capsys, trained):
    weights, _, _ = trained
    out = tmp_path / "m.pte"
    assert (
        main(["export", str(weights), "--format", "executorch", "--out", str(out), "--img-size", "48"]) == 0
    )
    printed = capsys.readouterr().out
    assert "XNNPACK delegate:" in printed and "(100.0%) in 1 piece(s)" in printed
    assert "executorch parity at batch 1, 48x48: max abs diff" in printed and out.is_file()
    args = [
        "export",
        str(weights),
        "--format",
        "litert",
        "--out",
        str(tmp_path / "m.tflite"),
        "--img-size",
        "48",
    ]
    assert main([*args, "--int8", "--calib-images", "16", "--min-agreement", "0.9", "--max-drop", "5"]) == 0
    assert "litert int8 vs fp32 on 360 digits validation images: top-1 agreement" in capsys.readouterr().out
    args = [
        "export",
        str(weights),
        "--format",
        "openvino",
        "--out",
        str(tmp_path / "m.xml"),
        "--img-size",
        "48",
    ]
    assert main([*args, "--precision", "bf16", "--min-agreement", "0.9"]) == 0
    assert "openvino bf16 vs fp32" in capsys.readouterr().out
    assert (tmp_path / "m.xml").is_file() and (tmp_path / "m.bin").is_file()


def test_bad_requests_are_refused_before_any_work(tmp_path, capsys, monkeypatch):
    model = randomize(create_model("mobilevit_xxs", num_classes=3)).eval()
    w = save_weights(
        model.state_dict(),
        tmp_path / "w.safetensors",
        {"format": "mobilevit", "arch": "mobilevit_xxs", "num_classes": 3},
    )
    base = ["export", str(w), "--img-size", "64"]
    for flags, message in (
        (["--format", "executorch", "--out", "m.pte", "--precision", "bf16"], "--precision is for openvino"),
        (["--format", "litert", "--out", "m.tflite", "--dynamic-batch"], "--dynamic-batch is for ONNX"),
        (["--format", "openvino", "--out", "m.xml", "--dynamic-hw"], "--dynamic-hw is refused"),
        (["--format", "coreml", "--out", "m.mlpackage", "--int8"], "--int8 is for onnx"),
    ):
        assert main([*base, *flags]) == 2
        assert message in capsys.readouterr().err
    with pytest.raises(ExportError, match="must end in .pte"):
        export_executorch(model, tmp_path / "m.tflite", (64, 64))
    with pytest.raises(ExportError, match="two ints >= 32"):
        export_litert(model, tmp_path / "m.tflite", (16, 16))
    seg = create_model("deeplabv3_mobilevit_xxs", num_classes=3).eval()
    with pytest.raises(ExportError, match="int8 is checked as top-1 agreement .* DeepLabV3"):
        export_executorch(seg, tmp_path / "s.pte", (64, 64), int8=True)
    det = create_model("ssdlite_mobilevit_xxs", num_classes=3, ssd={"image_size": (128, 128)}).eval()
    with pytest.raises(ExportError, match="built for 128x128"):
        export_openvino(det, tmp_path / "d.xml", (96, 96))
    with pytest.raises(ExportError, match="calibration needs at least one image"):
        export_litert(model, tmp_path / "m.tflite", (64, 64), int8=True, calib_images=0)
    assert not list(tmp_path.glob("m.*")) and not list(tmp_path.glob("s.*"))

    monkeypatch.setitem(sys.modules, "openvino", None)  # as if not installed: its import fails
    rc = main([*base, "--format", "openvino", "--out", str(tmp_path / "m.xml")])
    assert rc == 2
    err = capsys.readouterr().err
    assert (
        "the OpenVINO export needs openvino, which is not installed: pip install 'mobilevit[mobile]'" in err
    )
    assert "Traceback" not in err and not (tmp_path / "m.xml").exists()


@pytest.mark.slow
def test_bench_runtime_paths_for_ours_and_timm(capsys):
    """The side-by-side bench's runtime rows (OpenVINO here: the fast one to build), and a bad name."""
    from mobilevit.bench.runtime_paths import runtime_paths

    model = create_model("mobilevit_xxs").eval()
    x = torch.rand(1, 3, 64, 64)
    (ours,) = runtime_paths("mobilevit", model, x, ("openvino",))
    with torch.no_grad():
        assert ours.skipped is None and max_diff(ours(x), model(x)) <= 1e-4
    timm = pytest.importorskip("timm")
    peer = timm.create_model("mobilevit_xxs", pretrained=False).eval()
    (theirs,) = runtime_paths("timm", peer, x, ("openvino",))
    with torch.no_grad():
        assert theirs.skipped is None and max_diff(theirs(x), peer(x)) <= 1e-4
    assert main(["bench", "--side-by-side", "--models", "mobilevit_xxs", "--runtimes", "tflite"]) == 2
    assert "unknown runtime path(s) tflite; choose from executorch" in capsys.readouterr().err
