"""int8 post-training quantization: written only where it is faster, with its accuracy and time."""

import json

import numpy as np
import pytest
from _utils import randomize

pytest.importorskip("onnxruntime")

from mobilevit import create_model  # noqa: E402
from mobilevit.cli import main  # noqa: E402
from mobilevit.data import write_digits  # noqa: E402
from mobilevit.export import ExportError, Int8NotFaster, export_int8  # noqa: E402
from mobilevit.export import int8 as int8_mod  # noqa: E402
from mobilevit.export.batches import padded_batches  # noqa: E402
from mobilevit.export.calibration import load_int8_data  # noqa: E402
from mobilevit.weights.serialization import save_weights  # noqa: E402

SIZE = (64, 64)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return write_digits(tmp_path_factory.mktemp("digits"), size=32)


@pytest.fixture
def classifier():
    return randomize(create_model("mobilevit_xxs", num_classes=10)).eval()


def _fake_timing(fp32_ms, int8_ms):
    def timing(fp32, int8, x, rounds, budget_s):
        return {"fp32": fp32_ms, "int8": int8_ms}

    return timing


def test_load_int8_data(digits):
    data = load_int8_data(digits, (48, 40), calib_images=10, max_val=30)
    assert data.calib.shape == (10, 3, 48, 40) and data.val.shape == (30, 3, 48, 40)
    assert data.calib.dtype == np.float32 and data.calib.min() >= 0.0 and data.calib.max() <= 1.0
    assert data.val.dtype == np.uint8  # a quarter of float32's memory: a whole val split is held
    assert data.classes == [str(i) for i in range(10)] and data.calib_split == "train"
    assert data.labels.shape == (30,) and len(set(data.labels.tolist())) > 1  # a sample of every class


def test_unreadable_images_are_skipped_and_listed(tmp_path, digits, caplog):
    import shutil

    root = shutil.copytree(digits, tmp_path / "d")
    (root / "val" / "3" / "broken.png").write_bytes(b"not a png")
    data = load_int8_data(root, SIZE, calib_images=4)
    assert len(data.skipped) == 1 and "broken.png" in data.skipped[0]
    assert len(data.val) == len(list((digits / "val").rglob("*.png")))  # every readable image kept
    assert "skipping unreadable image" in caplog.text


def test_batches_pad_the_last_one():
    x = np.arange(5, dtype=np.float32).reshape(5, 1)
    got = list(padded_batches(x, 2))
    assert [n for _, n in got] == [2, 2, 1]
    assert got[-1][0].ravel().tolist() == [4.0, 4.0]


def test_pixel_values_give_back_the_eval_transforms_floats_bit_for_bit(digits):
    from PIL import Image

    from mobilevit.data.transforms import EvalTransform
    from mobilevit.export.batches import to_float, to_pixels

    image = Image.open(sorted((digits / "val").rglob("*.png"))[0]).convert("RGB")
    x = np.stack(
        [EvalTransform(40, 56)(image).numpy(), EvalTransform(48, 48, "bicubic")(image).numpy()[:, :40, :40]]
    )
    pixels = to_pixels(x)
    assert pixels.dtype == np.uint8 and np.array_equal(to_float(pixels), x)  # lossless
    (batch, n), *_ = padded_batches(pixels, 4)
    assert (
        n == 2
        and batch.dtype == np.float32
        and np.array_equal(batch[:2], x)
        and np.array_equal(batch[3], x[1])
    )


def test_slower_int8_is_refused_with_the_numbers(tmp_path, digits, classifier, monkeypatch):
    monkeypatch.setattr(int8_mod, "_time_sessions", _fake_timing(1.0, 1.3))
    out = tmp_path / "m.onnx"
    out.write_bytes(b"an older model")  # must not survive under the new model's name
    with pytest.raises(Int8NotFaster, match=r"1\.30 vs 1\.00 ms per image .*1\.30x.*was not written") as e:
        export_int8(classifier, out, SIZE, data=digits, calib_images=8, max_val=40, budget_s=0.2)
    assert not out.exists()
    assert (tmp_path / "m.fp32.onnx").is_file()  # the verified fp32 export stays
    report = json.loads((tmp_path / "m.int8.json").read_text())
    assert report["written"] is False and report == e.value.report.to_dict()
    assert report["timing"]["ratio_int8_vs_fp32"] == pytest.approx(1.3)
    assert 0.0 <= report["accuracy"]["top1_agreement"] <= 1.0 and report["accuracy"]["val_images"] == 40
    assert not list(tmp_path.glob("mobilevit-int8-*"))  # no temporary folder left behind


def test_faster_int8_is_written_and_runs(tmp_path, digits, classifier, monkeypatch):
    import onnx
    import onnxruntime as ort

    monkeypatch.setattr(int8_mod, "_time_sessions", _fake_timing(2.0, 1.0))
    out = tmp_path / "m.onnx"
    r = export_int8(
        classifier, out, SIZE, batch=4, data=digits, calib_images=8, max_val=40, budget_s=0.2, max_drop=100.0
    )  # random weights: the drop is noise, the speed rule is under test
    assert r.written and out.is_file() and r.timing.ratio_int8_vs_fp32 == pytest.approx(0.5)
    assert r.accuracy.fp32_top1 is not None and r.accuracy.accuracy_note is None  # 10 classes on 10 digits
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    logits = session.run(None, {"image": np.random.rand(4, 3, *SIZE).astype(np.float32)})[0]
    assert logits.shape == (4, 10) and np.isfinite(logits).all()


def test_accuracy_needs_matching_classes(tmp_path, digits, monkeypatch):
    monkeypatch.setattr(int8_mod, "_time_sessions", _fake_timing(2.0, 1.0))
    model = randomize(create_model("mobilevit_xxs", num_classes=7)).eval()
    r = export_int8(
        model,
        tmp_path / "m.onnx",
        SIZE,
        data=digits,
        calib_images=8,
        max_val=20,
        budget_s=0.2,
        min_agreement=0.0,
    )
    assert r.accuracy.fp32_top1 is None and "7 classes" in r.accuracy.accuracy_note
    assert 0.0 <= r.accuracy.top1_agreement <= 1.0


def test_int8_bad_input(tmp_path, digits):
    seg = create_model("deeplabv3_mobilevit_xxs").eval()
    with pytest.raises(ExportError, match="quantizes classifiers"):
        export_int8(seg, tmp_path / "s.onnx", SIZE, data=digits)
    model = create_model("mobilevit_xxs", num_classes=10).eval()
    (tmp_path / "nodata").mkdir()
    with pytest.raises(ExportError, match="expected 'digits' or a folder with val/"):
        export_int8(model, tmp_path / "m.onnx", SIZE, data=tmp_path / "nodata")
    with pytest.raises(ExportError, match="at least one image"):
        export_int8(model, tmp_path / "m.onnx", SIZE, data=digits, calib_images=0)
    assert not list(tmp_path.glob("*.onnx"))  # refused before any export


def test_int8_cli(tmp_path, capsys, classifier):
    w = save_weights(
        classifier.state_dict(),
        tmp_path / "w.safetensors",
        {"format": "mobilevit", "arch": "mobilevit_xxs", "num_classes": 10},
    )
    out = tmp_path / "m.onnx"
    args = ["export", str(w), "--out", str(out), "--img-size", "64", "--int8", "--calib-images", "8"]
    args += ["--int8-data", "digits", "--max-drop", "100"]  # random weights: the drop is noise
    args += ["--int8-keep-float", "stem", "stages.0.0"]
    rc = main([*args, "--int8-keep-slower"])  # the real measurement, whichever way it goes
    printed = capsys.readouterr()
    assert rc == 0 and out.is_file(), printed.err
    shown = "int8 (stem, stages.0.0 in fp32) vs fp32 on 360 digits validation images: top-1 agreement"
    assert shown in printed.out
    assert "time (onnxruntime, batch 1" in printed.out and "wrote" in printed.out
    report = json.loads((tmp_path / "m.int8.json").read_text())
    assert report["keep_float"] == ["stem", "stages.0.0"]
    assert report["accuracy"]["computed_as"] == "int8 (stem, stages.0.0 in fp32)"
    assert _float_convs(out) == {  # the written file: those blocks' convolutions read no int8
        "/stem/conv/Conv",
        *(f"/stages.0/stages.0.0/{m}/conv/Conv" for m in ("expand", "dw", "project")),
    }
    if report["timing"]["ratio_int8_vs_fp32"] >= 1.0:
        assert "int8 is slower than fp32 here" in printed.err


@pytest.mark.slow
def test_int8_cli_refusals(tmp_path, capsys, classifier, monkeypatch):
    w = save_weights(
        classifier.state_dict(),
        tmp_path / "w.safetensors",
        {"format": "mobilevit", "arch": "mobilevit_xxs", "num_classes": 10},
    )
    assert (
        main(["export", str(w), "--out", str(tmp_path / "m.mlpackage"), "--format", "coreml", "--int8"]) == 2
    )
    assert "mobilevit export: error: --int8 is for onnx" in capsys.readouterr().err
    monkeypatch.setattr(int8_mod, "_time_sessions", _fake_timing(1.0, 1.5))
    rc = main(
        [
            "export",
            str(w),
            "--out",
            str(tmp_path / "m.onnx"),
            "--img-size",
            "64",
            "--int8",
            "--int8-data",
            "digits",
        ]
    )
    assert rc == 3
    err = capsys.readouterr().err
    assert "int8 is not faster than fp32 on this machine: 1.50 vs 1.00 ms per image" in err
    assert not (tmp_path / "m.onnx").exists() and (tmp_path / "m.fp32.onnx").is_file()


# ------------------------------------------------ calibration data that matches the model, the keep rule
def test_the_calibration_source_comes_from_what_training_recorded(tmp_path, digits):
    from mobilevit.export.calibration import int8_source

    extra = {"img_size": 64, "eval_resize": 72, "interpolation": "bicubic"}
    folder = {**extra, "train_data": {"dataset": "folder", "root": str(digits)}}
    src = int8_source(None, folder, (128, 128), weights="w.safetensors")
    assert src.data == str(digits) and src.eval_resize == 144 and src.interpolation == "bicubic"
    assert src.why.startswith("recorded")
    assert int8_source(None, {**extra, "train_data": {"dataset": "digits"}}, (64, 64)).data == "digits"
    assert int8_source(tmp_path, folder, (64, 64)).data == str(tmp_path)  # given beats recorded
    with pytest.raises(ExportError, match="w.safetensors do not record the images .* --int8-data"):
        int8_source(None, {"img_size": 64}, (64, 64), weights="w.safetensors")
    gone = {"train_data": {"dataset": "folder", "root": str(tmp_path / "gone")}}
    with pytest.raises(ExportError, match="trained on folder images at .*gone, which is not here"):
        int8_source(None, gone, (64, 64))
    # the recorded eval preprocessing: resize the shorter side, then the centre crop
    data = load_int8_data(int8_source(None, folder, SIZE), SIZE, calib_images=2, max_val=3)
    assert data.val.shape == (3, 3, *SIZE) and "resize 72 + centre crop 64" in data.preprocessing


def test_a_model_whose_classes_are_not_the_datas_is_an_error_naming_both(tmp_path, capsys, classifier):
    from mobilevit.weights import WeightsMeta, write_weights

    imagenette = ["n01440764", "n02102040", "n02979186", "n03000684", "n03028079"]
    imagenette += ["n03394916", "n03417042", "n03425413", "n03445777", "n03888257"]
    meta = WeightsMeta(arch="mobilevit_xxs", num_classes=10, classes=imagenette, extra={"img_size": 64})
    w = write_weights(classifier.state_dict(), tmp_path / "w.safetensors", meta)
    out = tmp_path / "m.onnx"
    rc = main(["export", str(w), "--out", str(out), "--img-size", "64", "--int8", "--int8-data", "digits"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert "trained on 10 classes (n01440764, n02102040" in err and "'digits' has 10 classes (0, 1, 2" in err
    assert not list(tmp_path.glob("*.onnx"))  # refused before any export
    rc = main(["export", str(w), "--out", str(out), "--img-size", "64", "--int8"])  # records no data
    assert rc == 2 and "do not record the images they were trained on" in capsys.readouterr().err


def test_the_keep_rule_reads_the_top1_drop_and_agreement_beside_it():
    from mobilevit.export.reports import AccuracyCheck
    from mobilevit.export.runtime_checks import judge

    def check(fp32, top1, agreement):
        drop = None if fp32 is None else 100 * (fp32 - top1)
        return AccuracyCheck(
            "int8", "int8", agreement, 0.1, fp32, top1, drop, None, 400, 64, "train", "d", "r"
        )

    ok = check(0.80, 0.7975, 0.95)  # 0.25 pt lost, agreement well below the old 0.98
    assert judge(ok, 0.5, None) is None and ok.criterion == "top-1 drop <= 0.5 pt"
    bad = check(0.80, 0.79, 0.99)
    assert "loses 1.00 pt of top-1 on the 400 d validation images (80.00% -> 79.00%), more than 0.5" in judge(
        bad, 0.5, None
    )
    assert "agrees with fp32 on 0.9500" in judge(ok, 0.5, 0.98)  # agreement, when asked for, too
    unknown = check(None, None, 0.97)  # no accuracy: agreement decides, at 0.98 by default
    assert "below 0.98" in judge(unknown, 0.5, None) and unknown.criterion == "top-1 agreement >= 0.98"


def test_keep_rule_flags_out_of_range_are_refused_before_the_weights_are_read(tmp_path, capsys):
    args = ["export", str(tmp_path / "absent.safetensors"), "--out", str(tmp_path / "m.onnx"), "--int8"]
    assert main([*args, "--max-drop", "-1"]) == 2
    assert "--max-drop must be >= 0 points, got -1" in capsys.readouterr().err
    assert main([*args, "--min-agreement", "1.5"]) == 2
    assert "--min-agreement must be in [0, 1], got 1.5" in capsys.readouterr().err
    assert main([*args, "--int8-val-images", "0"]) == 2
    assert "--int8-val-images must be >= 1, got 0" in capsys.readouterr().err
    assert main([*args, "--format", "executorch", "--int8-keep-float", "stem"]) == 2
    assert "--int8-keep-float is for --int8 --format onnx" in capsys.readouterr().err


def test_an_unknown_keep_float_name_is_refused_before_any_export(tmp_path, digits, classifier):
    # "head.fc" is a module, but not one whose nodes the ONNX graph's scopes name
    for bad in ("stages.9", "head.fc"):
        with pytest.raises(
            ExportError, match=rf"'{bad}' is not a part onnxruntime's quantizer can leave in fp32; the parts "
        ):
            export_int8(classifier, tmp_path / "m.onnx", SIZE, data=digits, keep_float=["stem", bad])
    assert list(tmp_path.iterdir()) == []


def _float_convs(path):
    """The convolutions of an int8 ONNX file that read no dequantized (int8) input."""
    import onnx

    graph = onnx.load(str(path)).graph
    dq = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return {n.name for n in graph.node if n.op_type == "Conv" and not dq & set(n.input)}


def test_onnxruntime_int8_keeps_named_blocks_in_float(tmp_path):
    from mobilevit.export import export_onnx

    model = randomize(create_model("mobilevit_xxs", num_classes=10)).eval()
    export_onnx(model, tmp_path / "fp32.onnx", (64, 64))
    calib = np.random.default_rng(0).random((8, 3, 64, 64), dtype=np.float32)

    def float_convs(keep):
        int8_mod.quantize_int8(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", calib, keep_float=keep)
        return _float_convs(tmp_path / "int8.onnx")

    kept = float_convs(["stem", "stages.0.0"])
    assert kept == {
        "/stem/conv/Conv",
        *(f"/stages.0/stages.0.0/{m}/conv/Conv" for m in ("expand", "dw", "project")),
    }
    assert float_convs([]) == set()
    with pytest.raises(ExportError, match=r"'stages.9.9' name no part of this ONNX graph"):
        int8_mod.quantize_int8(
            tmp_path / "fp32.onnx", tmp_path / "int8.onnx", calib, keep_float=["stages.9.9"]
        )


def test_onnxruntime_sensitivity_pass_scores_one_block_at_a_time(tmp_path):
    from mobilevit.export import export_onnx, int8_sensitivity_onnx
    from mobilevit.export.onnx import ort_session

    model = randomize(create_model("mobilevit_xxs", num_classes=10)).eval()
    rng = np.random.default_rng(0)
    calib = rng.random((8, 3, 64, 64), dtype=np.float32)
    val, labels = rng.random((16, 3, 64, 64), dtype=np.float32), rng.integers(0, 10, 16)
    units = ["stem", "stages.0.0", "head"]
    kept = []
    quantize = int8_mod.quantize_int8

    def spy(*args, keep_float=(), **kw):  # each file keeps every unit but one in fp32
        kept.append(sorted(keep_float))
        return quantize(*args, keep_float=keep_float, **kw)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(int8_mod, "quantize_int8", spy)
        rows = int8_sensitivity_onnx(model, calib, val, labels, units=units, batch=8)
    assert kept == [sorted(set(units) - {u}) for u in units]
    assert sorted(r["unit"] for r in rows) == sorted(units)
    with pytest.raises(ExportError, match=r"'stages.9' is not a part"):  # before any export
        int8_sensitivity_onnx(model, calib, val, labels, units=["stages.9"])
    # the row of "stem" is the file with everything but the stem in fp32
    export_onnx(model, tmp_path / "fp32.onnx", (64, 64), dynamic_batch=True)
    int8_mod.quantize_int8(
        tmp_path / "fp32.onnx", tmp_path / "q.onnx", calib, keep_float=["stages.0.0", "head"]
    )
    got = int8_mod.run_batched(ort_session(tmp_path / "q.onnx"), val, 8).argmax(1)
    (stem,) = [r for r in rows if r["unit"] == "stem"]
    assert stem["top1"] == float((got == labels).mean())
    ref = int8_mod.run_batched(ort_session(tmp_path / "fp32.onnx"), val, 8).argmax(1)
    assert stem["agreement"] == float((got == ref).mean())
