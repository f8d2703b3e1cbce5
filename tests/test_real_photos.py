"""Real photos (../shared/data, skipped where absent): Imagenette loads, a short run trains on its
JPEGs and keeps the right weights, an int8 export calibrates and judges on the images the
weights were trained on, and coco128's real COCO files load with their crowd regions."""

import json
import os
from pathlib import Path

import pytest
from _utils import REPO

from mobilevit.cli import main
from mobilevit.engine import load_config, train

DATA = Path(os.environ.get("MOBILEVIT_SHARED_DATA", REPO.parent / "shared" / "data"))
IMAGENETTE = DATA / "imagenette160"
COCO128 = DATA / "coco128"

pytestmark = pytest.mark.real_data


def _need(path: Path) -> None:
    if not path.is_dir():
        pytest.skip(f"{path} is absent (the shared real-photo sets: ../shared/data/README.md)")


@pytest.fixture(scope="module")
def subset(tmp_path_factory):
    """A small Imagenette folder: per class the first 16 train and 6 val JPEGs (links to the real files)."""
    _need(IMAGENETTE)
    root = tmp_path_factory.mktemp("imagenette_subset")
    for split, n in (("train", 16), ("val", 6)):
        for cls in sorted(p for p in (IMAGENETTE / split).iterdir() if p.is_dir()):
            (root / split / cls.name).mkdir(parents=True)
            for f in sorted(cls.iterdir())[:n]:
                (root / split / cls.name / f.name).symlink_to(f)
    return root


def test_the_real_folder_loads_with_its_ten_classes():
    _need(IMAGENETTE)
    from mobilevit.data import ImageFolderDataset
    from mobilevit.data.transforms import EvalTransform

    ds = ImageFolderDataset(IMAGENETTE, "val", EvalTransform(128, 160))
    assert len(ds) == 3925 and len(ds.classes) == 10 and ds.classes[0] == "n01440764"
    image, label = ds[0]
    assert (
        tuple(image.shape) == (3, 128, 128)
        and label == 0
        and 0.0 <= float(image.min()) <= float(image.max()) <= 1.0
    )


@pytest.fixture(scope="module")
def trained(subset, tmp_path_factory):
    """XXS trained briefly on the subset at 64 px with an EMA far too slow for the run."""
    out = tmp_path_factory.mktemp("run")
    cfg = load_config(
        REPO / "configs" / "imagenette_mobilevit_xxs.yaml",
        [
            f"data.root={subset}",
            "data.img_size=64",
            "data.eval_resize=80",
            "data.batch_size=32",
            "data.resolutions=[64]",
            "data.num_workers=0",
            "optim.epochs=3",
            "optim.warmup_iters=5",
            "ema.momentum=1e-4",
            "ema.warmup=false",
            "run.threads=2",
            "run.progress=false",
            f"run.out_dir={out}",
        ],
    )
    return train(cfg), out


def test_a_short_run_on_real_photos_keeps_the_better_weights(trained, subset):
    from mobilevit.engine.evaluate import evaluate_weights
    from mobilevit.weights import read_weights_meta

    summary, out = trained
    assert summary["epochs_done"] == 3 and summary["bad_files"] == 0
    meta = read_weights_meta(out / "best.safetensors")
    assert meta.extra["train_data"] == {
        "dataset": "folder",
        "root": str(subset.resolve()),
        "train_split": "train",
        "val_split": "val",
    }
    ev = [f"data.root={subset}", "data.num_workers=0"]
    best = evaluate_weights(out / "best.safetensors", overrides=[*ev, f"run.out_dir={out / 'e1'}"])
    last = evaluate_weights(out / "last.safetensors", overrides=[*ev, f"run.out_dir={out / 'e2'}"])
    assert best["images"] == 60 and best["top1"] >= last["top1"]
    assert meta.extra["weights"] == summary["best_weights"]


def test_int8_calibrates_on_the_recorded_photos_and_refuses_the_digits(trained, subset, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    _, out = trained
    weights = str(out / "best.safetensors")
    onnx = tmp_path / "m.onnx"
    base = ["export", weights, "--out", str(onnx), "--img-size", "64", "--int8", "--calib-images", "32"]
    rc = main(
        [*base, "--int8-keep-slower", "--max-drop", "100"]
    )  # a minute-trained model: the rule is not under test
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert f"{subset.resolve()} (recorded: the folder data the weights were trained on)" in captured.err
    report = json.loads((tmp_path / "m.int8.json").read_text())["accuracy"]
    assert report["data"] == str(subset.resolve()) and report["val_images"] == 60
    assert report["fp32_top1"] is not None and "resize 80 + centre crop 64" in report["preprocessing"]
    rc = main([*base, "--int8-data", "digits"])  # another task's images: an error naming both
    err = capsys.readouterr().err
    assert rc == 2 and "trained on 10 classes (n01440764" in err and "'digits' has 10 classes (0, 1" in err


def test_coco128_loads_with_its_crowd_regions_and_category_ids():
    _need(COCO128)
    from mobilevit.data.coco import CocoDetection

    ds = CocoDetection(COCO128 / "train2017", COCO128 / "annotations" / "instances_train2017.json")
    assert len(ds) == 128
    image, target = ds[0]
    assert image.ndim == 3 and target["boxes"].shape[-1] == 4
    assert max(ds.cat_ids) == 90 and len(ds.cat_ids) == 80  # COCO's non-contiguous ids, all 80
    assert ds.stats["crowd"] == 10  # crowd regions are not trained on (pycocotools ignores them too)
    assert sum(len(ds[i][1]["labels"]) for i in range(len(ds))) == 939 - 10 - ds.stats["dropped"]
