"""The files users' folders hold: 16-bit PNGs, oversized images, hidden entries, links; and the
preprocessing a trained file records, honoured by predict, eval and the int8 export's data."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from mobilevit import create_model
from mobilevit.cli import main
from mobilevit.data import BadSample, EvalTransform, ImageFolderDataset
from mobilevit.data.images import read_rgb
from mobilevit.engine import evaluate_weights
from mobilevit.export import ExportError, int8_source, load_int8_data
from mobilevit.loading import load_model
from mobilevit.predict import predict_images
from mobilevit.weights import WeightsMeta, write_weights


def _photo(seed: int, size: int = 40) -> Image.Image:
    g = np.random.default_rng(seed)
    return Image.fromarray(g.integers(0, 256, (size, size, 3), dtype=np.uint8))


@pytest.fixture()
def folder(tmp_path):
    """``train/`` and ``val/`` with classes a and b, three small PNGs each."""
    root = tmp_path / "photos"
    for split in ("train", "val"):
        for c, cls in enumerate("ab"):
            (root / split / cls).mkdir(parents=True)
            for i in range(3):
                _photo(100 * c + i + (50 if split == "val" else 0)).save(root / split / cls / f"{i}.png")
    return root


def _weights(tmp_path, **extra):
    model = create_model("mobilevit_xxs", num_classes=2).eval()
    meta = WeightsMeta(arch="mobilevit_xxs", num_classes=2, classes=["a", "b"], extra=extra)
    return write_weights(model.state_dict(), tmp_path / "w.safetensors", meta)


def test_a_16_bit_png_is_scaled_not_clipped(tmp_path):
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    rgb = np.asarray(read_rgb(tmp_path / "g16.png"))
    assert rgb.shape == (64, 64, 3) and rgb.dtype == np.uint8
    expected = np.round(ramp / 257).astype(np.uint8)
    assert np.abs(rgb[..., 0].astype(int) - expected).max() <= 1  # Pillow's convert: 99.97% at 255
    Image.fromarray(expected).save(tmp_path / "g8.png")
    w = _weights(tmp_path, img_size=32, eval_resize=40)
    model, meta = load_model(w)
    p16, p8 = predict_images(model, ["a", "b"], [tmp_path / "g16.png", tmp_path / "g8.png"], topk=1)
    assert p16["top"][0]["prob"] == pytest.approx(p8["top"][0]["prob"], abs=0.02)


def test_an_oversized_image_is_a_bad_sample_not_a_crash(folder, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 40x40 > 2 x 100: Pillow's bomb error
    item = ImageFolderDataset(folder, "train")[0]
    assert isinstance(item, BadSample) and "DecompressionBombError" in item.error
    results = predict_images(create_model("mobilevit_xxs", num_classes=2).eval(), ["a", "b"], [item.path])
    assert "DecompressionBombError" in results[0]["error"]


def test_hidden_entries_are_skipped_and_linked_folders_followed(folder, tmp_path):
    (folder / "val" / ".ipynb_checkpoints").mkdir()
    (folder / "train" / "a" / "._0.png").write_bytes(b"\x00\x05\x16\x07 resource fork")  # macOS
    (folder / "train" / "a" / ".cache").mkdir()
    _photo(7).save(folder / "train" / "a" / ".cache" / "x.png")
    elsewhere = tmp_path / "more"
    elsewhere.mkdir()
    _photo(8).save(elsewhere / "z.png")
    os.symlink(elsewhere, folder / "train" / "b" / "linked")
    train = ImageFolderDataset(folder, "train")
    names = [os.path.relpath(p, folder / "train") for p, _ in train.samples]
    assert train.classes == ["a", "b"]
    assert names == ["a/0.png", "a/1.png", "a/2.png", "b/0.png", "b/1.png", "b/2.png", "b/linked/z.png"]
    assert ImageFolderDataset(folder, "val", classes=train.classes).classes == ["a", "b"]


def test_predict_follows_the_recorded_interpolation(tmp_path):
    w = _weights(tmp_path, img_size=32, eval_resize=48, interpolation="bicubic")
    model, _ = load_model(w)
    cfg = model.pretrained_cfg
    assert (cfg["crop_size"], cfg["resize_size"], cfg["interpolation"]) == (32, 48, "bicubic")
    _photo(3, size=64).save(tmp_path / "p.png")
    (got,) = predict_images(model, ["a", "b"], [tmp_path / "p.png"], topk=2)
    probs = {}
    for interp in ("bicubic", "bilinear"):
        with torch.no_grad():
            x = EvalTransform(32, 48, interp)(Image.open(tmp_path / "p.png").convert("RGB"))[None]
            probs[interp] = model(x).softmax(-1)[0]
    top = {t["class"]: t["prob"] for t in got["top"]}
    assert top == pytest.approx({"a": float(probs["bicubic"][0]), "b": float(probs["bicubic"][1])}, abs=1e-6)
    assert not torch.allclose(probs["bicubic"], probs["bilinear"], atol=1e-6)  # the two differ here


def test_eval_keeps_the_recorded_preprocessing_above_the_recipe(folder, tmp_path):
    w = _weights(tmp_path, img_size=32, eval_resize=40, interpolation="bicubic")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("data:\n  dataset: folder\n  img_size: 64\n  eval_resize: 80\n  num_workers: 0\n")
    common = [f"data.root={folder}", f"run.out_dir={tmp_path / 'ev'}", "run.progress=false"]
    got = evaluate_weights(w, recipe, common)
    assert got["preprocessing"] == "resize 40 + centre crop 32 (bicubic)" and got["images"] == 6
    asked = evaluate_weights(w, recipe, [*common, "data.img_size=48", "data.eval_resize=56"])
    assert asked["preprocessing"] == "resize 56 + centre crop 48 (bicubic)"


def test_int8_data_reads_the_recorded_split_names_and_checks_classes_first(folder, monkeypatch):
    os.rename(folder / "train", folder / "training")
    os.rename(folder / "val", folder / "validation")
    recorded = {
        "img_size": 32,
        "eval_resize": 40,
        "train_data": {
            "dataset": "folder",
            "root": str(folder),
            "train_split": "training",
            "val_split": "validation",
        },
    }
    source = int8_source(None, recorded, (32, 32))
    assert (source.train_split, source.val_split) == ("training", "validation")
    data = load_int8_data(source, (32, 32), calib_images=2, model_classes=["a", "b"])
    assert data.classes == ["a", "b"] and len(data.labels) == 6 and data.calib_split == "training"

    def no_reading(self, key):
        raise AssertionError("an image was read before the classes were checked")

    monkeypatch.setattr(ImageFolderDataset, "__getitem__", no_reading)
    with pytest.raises(ExportError, match=r"trained on 2 classes \(cat, dog\).*has 2 classes \(a, b\)"):
        load_int8_data(source, (32, 32), calib_images=2, model_classes=["cat", "dog"])


def test_export_defaults_to_the_recorded_crop_and_predict_refuses_a_bad_topk(tmp_path, capsys):
    w = _weights(tmp_path, img_size=64, eval_resize=80)
    assert main(["export", str(w), "--out", str(tmp_path / "m.onnx")]) == 0
    import onnx

    dims = onnx.load(str(tmp_path / "m.onnx")).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims][-2:] == [64, 64]
    with pytest.raises(SystemExit) as e:
        main(["predict", str(tmp_path / "m.onnx"), "--weights", str(w), "--topk", "0"])
    assert e.value.code == 2 and "--topk: must be >= 1, got 0" in capsys.readouterr().err
    assert main(["predict", str(w), "--weights", str(w)]) == 2  # weights given as the image
    assert "cannot identify image file" in capsys.readouterr().out
