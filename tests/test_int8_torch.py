"""PyTorch's x86 int8 (PT2E quantization): a real int8 graph close to fp32, and its bad inputs.

The compiled (inductor) form is timed and checked by benchmarks/latency.py; compiling a model
takes about a minute here, so these tests run the converted graph uncompiled (the same int8
arithmetic, simulated in fp32).
"""

import sys

import numpy as np
import pytest
import torch
from _utils import randomize

pytest.importorskip("torchao")

from mobilevit import create_model  # noqa: E402
from mobilevit.export.int8_torch import (  # noqa: E402
    Int8Unavailable,
    int8_sensitivity,
    int8_units,
    load_int8_torch,
    predict_fixed_batch,
    quantize_int8_torch,
    save_int8_torch,
)


@pytest.fixture(scope="module")
def model_and_images():
    torch.manual_seed(0)
    model = randomize(create_model("mobilevit_xxs", num_classes=10)).eval()
    return model, torch.rand(24, 3, 64, 64), torch.rand(12, 3, 64, 64)


@pytest.fixture(scope="module")
def quantized(model_and_images):
    model, calib, _ = model_and_images
    return quantize_int8_torch(model, calib, batch_size=8, compile=False)


def test_int8_graph_is_quantized_and_close_to_fp32(model_and_images, quantized):
    model, _, val = model_and_images
    targets = [str(n.target) for n in quantized.quantized.graph.nodes if n.op == "call_function"]
    # every conv and linear reads int8: one dequantize per weight at least
    weights = sum("dequantize_per_channel" in t for t in targets)
    assert weights >= sum(isinstance(m, torch.nn.Conv2d | torch.nn.Linear) for m in model.modules())
    assert sum("quantize_per_tensor" in t for t in targets) > 20  # activations too
    with torch.no_grad():
        ref, got = model(val), quantized(val)
    assert got.shape == ref.shape == (12, 10)
    rel = float((got - ref).abs().max() / ref.abs().max())
    assert 0 < rel < 0.15, rel  # moved by rounding, but not far
    cos = torch.nn.functional.cosine_similarity(got, ref, dim=1)
    assert float(cos.min()) > 0.98
    assert quantized.report["calib_images"] == 24 and quantized.report["img_size"] == [64, 64]


def test_int8_module_is_inference_only(quantized):
    assert quantized.eval() is quantized and not quantized.training
    with pytest.raises(RuntimeError, match="inference only"):
        quantized.train()


def test_int8_takes_other_batch_sizes_not_other_sizes(model_and_images, quantized):
    _, _, val = model_and_images
    assert quantized(val[:3]).shape == (3, 10)
    with pytest.raises(ValueError, match=r"takes \[B, 3, 64, 64\] images .* got \(2, 3, 96, 64\)"):
        quantized(torch.rand(2, 3, 96, 64))


@pytest.mark.parametrize("name", ["ssdlite_mobilevit_xxs", "deeplabv3_mobilevit_xxs"])
def test_detectors_and_segmenters_are_refused(name):
    model = create_model(name, num_classes=3).eval()
    with pytest.raises(ValueError, match="quantizes classifiers"):
        quantize_int8_torch(model, torch.rand(2, 3, 64, 64), compile=False)


@pytest.mark.slow
def test_save_and_load_round_trip(tmp_path, model_and_images, quantized):
    _, _, val = model_and_images
    path = save_int8_torch(quantized, tmp_path / "sub" / "xxs_int8.pt2")
    loaded = load_int8_torch(path, compile=False)
    with torch.no_grad():
        torch.testing.assert_close(loaded(val[:5]), quantized(val[:5]), rtol=0, atol=1e-6)
    assert loaded.report["img_size"] == [64, 64] and loaded.report["calib_images"] == 24
    with pytest.raises(ValueError, match="takes"):
        loaded(torch.rand(1, 3, 32, 32))


def test_load_bad_files(tmp_path, model_and_images):
    with pytest.raises(FileNotFoundError, match="no int8 model"):
        load_int8_torch(tmp_path / "missing.pt2")
    junk = tmp_path / "junk.pt2"
    junk.write_text("not a program")
    with pytest.raises(ValueError, match="not a torch.export program"):
        load_int8_torch(junk)
    # a torch.export program of an fp32 model is not an int8 model
    fp32 = tmp_path / "fp32.pt2"
    torch.export.save(torch.export.export(model_and_images[0], (torch.rand(1, 3, 64, 64),)), str(fp32))
    with pytest.raises(ValueError, match="not an int8 model"):
        load_int8_torch(fp32)


def test_predict_fixed_batch_pads_and_drops(model_and_images):
    model, _, val = model_and_images
    seen = []

    def fake(x):
        seen.append(x.shape[0])
        return model(x)

    out = predict_fixed_batch(fake, val[:10].numpy(), batch=4)
    assert seen == [4, 4, 4] and out.shape == (10, 10)
    with torch.no_grad():
        np.testing.assert_allclose(out, model(val[:10]).numpy(), atol=1e-4)


@pytest.mark.parametrize(
    "calib, match",
    [
        (torch.rand(3, 64, 64), r"\[N, 3, H, W\]"),
        (torch.rand(0, 3, 64, 64), r"N >= 1"),
        (torch.rand(4, 1, 64, 64), r"\[N, 3, H, W\]"),
        (torch.zeros(4, 3, 64, 64, dtype=torch.uint8), "must be float"),
    ],
)
def test_bad_calibration_images(model_and_images, calib, match):
    model = model_and_images[0]
    with pytest.raises(ValueError, match=match):
        quantize_int8_torch(model, calib, compile=False)


def test_bad_batch_size(model_and_images):
    model, calib, _ = model_and_images
    with pytest.raises(ValueError, match="batch_size"):
        quantize_int8_torch(model, calib, batch_size=0, compile=False)


def test_without_torchao_says_what_to_install(model_and_images, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchao.quantization.pt2e.quantize_pt2e", None)
    with pytest.raises(Int8Unavailable, match="pip install"):
        quantize_int8_torch(model_and_images[0], model_and_images[1], compile=False)


def _weight_dequants(q) -> int:
    return sum(
        "dequantize_per_channel" in str(n.target) for n in q.quantized.graph.nodes if n.op == "call_function"
    )


def _activation_ranges(q) -> set[int]:
    return {
        int(n.args[4])
        for n in q.quantized.graph.nodes
        if n.op == "call_function"
        and "quantize_per_tensor" in str(n.target)
        and "dequantize" not in str(n.target)
    }


def test_keep_float_leaves_the_named_blocks_in_fp32(model_and_images, quantized):
    model, calib, _ = model_and_images
    keep = ["stages.4.1", "head"]
    q = quantize_int8_torch(model, calib, batch_size=8, compile=False, keep_float=keep)
    layers = sum(
        isinstance(m, torch.nn.Conv2d | torch.nn.Linear)
        for name in keep
        for m in model.get_submodule(name).modules()
    )
    assert layers > 5
    assert _weight_dequants(quantized) - _weight_dequants(q) == layers
    assert q.report["keep_float"] == keep
    with pytest.raises(
        ValueError, match=r"'stages.9' name no module of MobileViT; its blocks are stem, stages.0.0"
    ):
        quantize_int8_torch(model, calib, compile=False, keep_float=["stages.9"])


@pytest.mark.parametrize("name", ["mobilevit_xxs", "mobilevitv2_050", "mobilevitv3_xxs"])
def test_int8_units_are_every_block(name):
    model = create_model(name, num_classes=10)
    units = int8_units(model)
    modules = dict(model.named_modules())
    assert all(u in modules for u in units)
    assert sum(u.startswith("stages.") for u in units) == sum(len(s) for s in model.stages)
    assert units[0] == "stem" and units[-1] == "head"


def test_reduce_range_follows_the_cpu(model_and_images, monkeypatch):
    """7-bit activations where oneDNN's int8 kernels have no VNNI / AMX dot product (they would
    overflow on 8-bit ones), 8-bit where they have."""
    import mobilevit.export.int8_torch as it

    model, calib, _ = model_and_images
    monkeypatch.setattr(it, "cpu_has_int8_dot", lambda: False)
    q7 = quantize_int8_torch(model, calib, batch_size=8, compile=False)
    assert q7.report["reduce_range"] is True and _activation_ranges(q7) == {127}
    monkeypatch.setattr(it, "cpu_has_int8_dot", lambda: True)
    q8 = quantize_int8_torch(model, calib, batch_size=8, compile=False)
    assert q8.report["reduce_range"] is False and _activation_ranges(q8) == {255}


def test_int8_sensitivity_ranks_the_blocks(model_and_images):
    model, calib, val = model_and_images
    with torch.no_grad():
        labels = model(val).argmax(1).numpy()  # fp32 scores 100%: every drop is the block's
    rows = int8_sensitivity(model, calib[:8], val, labels, units=["stem", "stages.4.1"])
    assert sorted(r["unit"] for r in rows) == ["stages.4.1", "stem"]
    assert rows[0]["drop_pt"] >= rows[1]["drop_pt"]
    for r in rows:
        assert r["drop_pt"] == pytest.approx(100 * (1 - r["top1"])) and r["agreement"] == pytest.approx(
            r["top1"]
        )
