"""The optimised inference path and ONNX export with onnxruntime parity."""

import pytest
import torch
from _utils import max_diff, randomize

from mobilevit import create_model, optimize_for_inference
from mobilevit.cli import main
from mobilevit.export import ExportError, export_onnx, fold_batchnorm
from mobilevit.weights.serialization import save_weights


@pytest.mark.parametrize("name", ["mobilevit_xxs", "mobilevit_s", "deeplabv3_mobilevit_xxs"])
def test_optimized_path_equals_eager(name):
    model = randomize(create_model(name)).eval()
    for channels_last in (True, False):  # the default here is channels-last (oneDNN builds)
        fast = optimize_for_inference(model, channels_last=channels_last)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
        assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # the original is untouched
        for size in ((256, 256), (250, 190)):  # 250x190: the blocks resize to a patch multiple
            x = torch.rand(2, 3, *size)
            with torch.no_grad():
                out, ref = fast(x), model(x)
            assert max_diff(out, ref) <= 1e-4
            assert out.is_contiguous()  # plain tensors in and out, whatever the layout inside
        x = torch.rand(1, 3, 128, 160).contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            assert max_diff(fast(x), model(x)) <= 1e-4
    first_conv = next(m for m in optimize_for_inference(model).modules() if isinstance(m, torch.nn.Conv2d))
    assert (
        first_conv.weight.is_contiguous(memory_format=torch.channels_last)
        == torch.backends.mkldnn.is_available()
    )


def test_fold_batchnorm_refuses_training_mode():
    with pytest.raises(RuntimeError, match="eval"):
        fold_batchnorm(create_model("mobilevit_xxs").train())


ort = pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("size", [(256, 256), (250, 190)])
def test_onnx_parity_at_two_sizes(tmp_path, size):
    model = randomize(create_model("mobilevit_xxs")).eval()
    report = export_onnx(model, tmp_path / "m.onnx", size)
    assert report.checks[0].max_abs_diff <= 1e-4 and (tmp_path / "m.onnx").is_file()
    # the graph unfolds / folds inside each attention layer's transposes ("pixels", rank 8)
    import onnx

    perms = [
        list(a.ints)
        for n in onnx.load(str(tmp_path / "m.onnx")).graph.node
        if n.op_type == "Transpose"
        for a in n.attribute
        if a.name == "perm"
    ]
    assert (
        perms.count([5, 0, 2, 4, 6, 1, 3, 7]) == 9 and perms.count([0, 4, 1, 5, 2, 3, 6]) == 9
    )  # 2+4+3 layers


def test_onnx_dynamic_batch_checked_at_two_batches(tmp_path):
    model = randomize(create_model("deeplabv3_mobilevit_xxs", num_classes=5)).eval()
    report = export_onnx(model, tmp_path / "d.onnx", (128, 96), dynamic_batch=True)
    assert [c.batch for c in report.checks] == [2, 3]
    sess = ort.InferenceSession(str(tmp_path / "d.onnx"), providers=["CPUExecutionProvider"])
    assert sess.run(None, {"image": torch.rand(4, 3, 128, 96).numpy()})[0].shape == (4, 5, 128, 96)


def test_refusals_and_a_failed_parity_check_deletes_the_file(tmp_path, monkeypatch):
    model = create_model("mobilevit_xxs").eval()
    with pytest.raises(ExportError, match="dynamic height/width is refused"):
        export_onnx(model, tmp_path / "m.onnx", dynamic_hw=True)
    with pytest.raises(ExportError, match="unsupported opset 3"):
        export_onnx(model, tmp_path / "m.onnx", opset=3)
    with pytest.raises(
        ExportError, match=r"unsupported opset 13; use 14\.\.21"
    ):  # the check and its message agree
        export_onnx(model, tmp_path / "m.onnx", opset=13)
    with pytest.raises(ExportError, match="image size must be two ints >= 32"):
        export_onnx(model, tmp_path / "m.onnx", (16, 16))
    real_run = ort.InferenceSession.run

    def off_by_a_bit(self, names, feeds):
        return [out + 0.01 for out in real_run(self, names, feeds)]

    monkeypatch.setattr(ort.InferenceSession, "run", off_by_a_bit)
    with pytest.raises(ExportError, match=r"max abs diff 0\.01 > 0\.0001; the export was deleted"):
        export_onnx(model, tmp_path / "bad.onnx", (64, 64))
    assert not (tmp_path / "bad.onnx").exists()


def test_export_cli(tmp_path, capsys):
    model = randomize(create_model("mobilevit_xxs", num_classes=3))
    w = save_weights(
        model.state_dict(),
        tmp_path / "w.safetensors",
        {"format": "mobilevit", "arch": "mobilevit_xxs", "num_classes": 3},
    )
    out = tmp_path / "m.onnx"
    assert main(["export", str(w), "--out", str(out), "--img-size", "200", "168"]) == 0
    printed = capsys.readouterr().out
    assert "onnxruntime parity at batch 1, 200x168: max abs diff" in printed and out.is_file()
    assert main(["export", str(w), "--out", str(tmp_path / "x.onnx"), "--dynamic-hw"]) == 2
    assert "dynamic height/width is refused" in capsys.readouterr().err


@pytest.mark.slow
def test_coreml_conversion_classifier_and_detector(tmp_path, capsys):
    """Conversion runs on Linux; running the model (and the parity check) needs macOS."""
    ct = pytest.importorskip("coremltools")
    import platform

    from mobilevit.export.coreml import export_coreml

    model = randomize(create_model("mobilevit_xxs", num_classes=3))
    w = save_weights(
        model.state_dict(),
        tmp_path / "w.safetensors",
        {"format": "mobilevit", "arch": "mobilevit_xxs", "num_classes": 3},
    )
    out = tmp_path / "xxs.mlpackage"
    assert main(["export", str(w), "--format", "coreml", "--out", str(out), "--img-size", "160", "192"]) == 0
    printed = capsys.readouterr().out
    assert out.is_dir() and f"wrote {out}" in printed
    for flags, shown in ((["--batch", "4"], "--batch 4"), (["--dynamic-batch"], "--dynamic-batch")):
        assert (
            main(["export", str(w), "--format", "coreml", "--out", str(tmp_path / "b.mlpackage"), *flags])
            == 2
        )
        assert f"{shown} is for ONNX; a Core ML export takes a fixed batch of 1" in capsys.readouterr().err
    assert not (tmp_path / "b.mlpackage").exists()
    if platform.system() != "Darwin":
        assert "skipped: running a Core ML model needs macOS" in printed
    spec = ct.utils.load_spec(str(out))
    (inp,) = spec.description.input
    assert inp.name == "image" and list(inp.type.multiArrayType.shape) == [1, 3, 160, 192]
    assert [o.name for o in spec.description.output] == ["output"]

    det = create_model("ssdlite_mobilevit_xxs", num_classes=4, ssd={"image_size": (128, 128)}).eval()
    report = export_coreml(det, tmp_path / "ssd.mlpackage", (128, 128))
    assert report.outputs == ["scores", "boxes"]
    spec = ct.utils.load_spec(report.path)
    assert [o.name for o in spec.description.output] == ["scores", "boxes"]

    with pytest.raises(ExportError, match="flexible height/width is refused"):
        export_coreml(model, tmp_path / "flex.mlpackage", dynamic_hw=True)
    with pytest.raises(ExportError, match="folder ending in .mlpackage"):
        export_coreml(model, tmp_path / "m.mlmodel", (160, 160))
