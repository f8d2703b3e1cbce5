"""SSDLite training end to end on the built-in COCO-format shapes set: train, resume, eval
(pycocotools mAP through the CLI), predict's PNG, backbone weights, and the bad inputs."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from mobilevit import create_model
from mobilevit.cli import main
from mobilevit.data.synthetic import write_shapes_coco
from mobilevit.engine import ConfigError, Trainer, TrainingError, load_config, train
from mobilevit.engine.config import DetTrainConfig
from mobilevit.weights.serialization import read_state_dict


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory):
    return write_shapes_coco(tmp_path_factory.mktemp("shapes_coco"), size=96, n_train=10, n_val=4, seed=1)


def _cfg(tmp_path, root, *extra):
    return load_config(None, [
        "task=detection", "data.dataset=shapes", f"data.root={root}", "data.builtin_size=96",
        "data.builtin_train=10", "data.builtin_val=4", "data.image_size=96", "data.batch_size=4",
        "data.eval_batch_size=4", "data.num_workers=0", "model.name=ssdlite_mobilevit_xxs",
        "model.num_classes=5", "optim.epochs=1", "optim.warmup_iters=1", "ema.recalibrate_bn=1",
        "run.progress=false", "run.threads=2", f"run.out_dir={tmp_path / 'run'}", *extra,
    ])  # fmt: skip


def test_config_picks_the_detection_recipe():
    cfg = load_config(None, ["task=detection", "data.root=/data/coco"])
    assert isinstance(cfg, DetTrainConfig)
    assert cfg.model.num_classes == 81 and cfg.data.image_size == 320 and cfg.optim.warmup_iters == 500
    with pytest.raises(ConfigError, match="data.root is required"):
        load_config(None, ["task=detection"])
    with pytest.raises(ConfigError, match="unknown config key 'data.crop_size'"):
        load_config(None, ["task=detection", "data.dataset=shapes", "data.crop_size=3"])


@pytest.mark.parametrize("name", ["xxs", "xs", "s"])
def test_coco_recipes_load(name):
    from pathlib import Path

    recipe = Path(__file__).resolve().parents[1] / "configs" / f"coco_ssdlite_mobilevit_{name}.yaml"
    cfg = load_config(recipe)
    assert cfg.model.name == f"ssdlite_mobilevit_{name}" and cfg.model.num_classes == 81
    assert cfg.optim.epochs == 200 and cfg.optim.weight_decay == 0.01 and cfg.optim.lr == 9e-4
    assert cfg.ema.enabled and cfg.ema.momentum == 5e-4 and cfg.data.image_size == 320


def test_train_resume_eval_predict(coco_root, tmp_path, capsys):
    summary = train(_cfg(tmp_path, coco_root))
    out = tmp_path / "run"
    assert summary["epochs_done"] == 1 and summary["global_step"] == 2  # 10 // 4, last batch dropped
    assert 0 <= summary["best_map"] <= 1
    for name in (
        "best.safetensors",
        "last.safetensors",
        "metrics.csv",
        "curves.png",
        "report.md",
        "resume.pt",
    ):
        assert (out / name).is_file(), name
    _, meta = read_state_dict(out / "best.safetensors")
    assert meta["task"] == "detection" and json.loads(meta["classes"])[0] == "background"
    assert json.loads(meta["ssd"])["image_size"] == [96, 96] and json.loads(meta["cat_ids"]) == [1, 2, 3, 4]
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"val_map", "val_map50", "val_ema_map", "val_ema_map50"} <= set(row)

    # resume: one more epoch continues the step count
    more = train(_cfg(tmp_path, coco_root, "optim.epochs=2"), resume=out / "resume.pt")
    assert more["epochs_done"] == 2 and more["global_step"] == 4

    capsys.readouterr()
    ev = ["eval", str(out / "best.safetensors"), "data.dataset=shapes", f"data.root={coco_root}"]
    ev += ["data.builtin_size=96", "data.builtin_train=10", "data.builtin_val=4", "data.num_workers=0"]
    assert main([*ev, f"run.out_dir={tmp_path / 'ev'}"]) == 0
    captured = capsys.readouterr()
    res = json.loads(captured.out.strip().splitlines()[-1])
    assert {"map", "map50", "map75", "map_small", "map_medium", "map_large"} <= set(res)
    assert 0 <= res["map50"] <= 1 and res["images"] == 4
    assert "Average Precision" in captured.err  # pycocotools' own summary table

    image = coco_root / "val" / sorted(p.name for p in (coco_root / "val").iterdir())[0]
    args = [
        "predict",
        str(image),
        "--weights",
        str(out / "best.safetensors"),
        "--out-dir",
        str(tmp_path / "p"),
    ]
    assert main([*args, "--score-threshold", "0.0", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)[0]  # standard output: the JSON alone
    png = tmp_path / "p" / f"{image.stem}_boxes.png"
    assert found["boxes_png"] == str(png)
    with Image.open(png) as im, Image.open(image) as src:
        assert im.size == src.size and im.mode == "RGB"
        drawn = np.asarray(im, dtype=np.int16)
        changed = (np.abs(drawn - np.asarray(src.convert("RGB"), dtype=np.int16)).sum(-1) > 0).mean()
    assert len(found["detections"]) > 0 and changed > 0.01  # boxes were drawn
    for d in found["detections"]:
        assert d["class"] in ("ellipse", "rectangle", "triangle", "star") and 0 <= d["score"] <= 1


def test_predict_reports_unreadable_images(coco_root, tmp_path, capsys):
    model = create_model("ssdlite_mobilevit_xxs", num_classes=5, ssd={"image_size": (96, 96)})
    from mobilevit.weights.serialization import save_weights

    weights = tmp_path / "w.safetensors"
    meta = {"format": "mobilevit", "task": "detection", "arch": "ssdlite_mobilevit_xxs", "num_classes": 5}
    save_weights(model.state_dict(), weights, {**meta, "ssd": {"image_size": [96, 96]}})
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    assert main(["predict", str(bad), "--weights", str(weights), "--out-dir", str(tmp_path / "p")]) == 2
    assert "broken.jpg: error" in capsys.readouterr().out


def test_builtin_data_never_overwrites_a_foreign_folder(tmp_path):
    from mobilevit.data import DataError

    mine = tmp_path / "photos"
    mine.mkdir()
    (mine / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(DataError, match="refusing to overwrite"):
        write_shapes_coco(mine, size=64, n_train=2, n_val=1)
    assert (mine / "holiday.jpg").read_bytes() == b"precious"


def test_bad_setups_fail_before_training(coco_root, tmp_path):
    with pytest.raises(TrainingError, match="set model.num_classes=5"):
        Trainer(_cfg(tmp_path, coco_root, "model.num_classes=7"))
    with pytest.raises(TrainingError, match="cannot fill one batch of 16"):
        Trainer(_cfg(tmp_path, coco_root, "data.batch_size=16"))


def test_backbone_weights_from_a_classifier(tmp_path):
    from mobilevit.weights.serialization import save_weights

    cls = create_model("mobilevit_xxs", num_classes=10)
    for p in cls.parameters():
        torch.nn.init.normal_(p, std=0.02)
    path = tmp_path / "cls.safetensors"
    save_weights(cls.state_dict(), path, {"format": "mobilevit", "arch": "mobilevit_xxs"})
    det = create_model("ssdlite_mobilevit_xxs", num_classes=5, backbone_weights=str(path))
    torch.testing.assert_close(det.backbone.body.stem.conv.weight, cls.stem.conv.weight)
    torch.testing.assert_close(
        det.backbone.body.stages[4][1].conv_fusion.conv.weight, cls.stages[4][1].conv_fusion.conv.weight
    )
