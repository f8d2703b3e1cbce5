"""DeepLabv3-MobileViT: exact models, equivalence with ml-cvnets and transformers, VOC data,
mIoU, training, eval / predict and the bad inputs."""

import json
import logging
import shutil

import numpy as np
import pytest
import torch
from _utils import FIXTURES, HF_CONFIGS, VARIANTS, max_diff, randomize
from PIL import Image

from mobilevit import create_model
from mobilevit.bench import count_params
from mobilevit.cli import main
from mobilevit.data import DataError
from mobilevit.data.synthetic import write_shapes_voc
from mobilevit.data.voc import SegEvalTransform, SegTrainTransform, VOCSegmentation, voc_palette
from mobilevit.engine import Trainer, TrainingError, load_config, train
from mobilevit.engine.metrics import ConfusionMatrix
from mobilevit.weights import load_state_dict_checked
from mobilevit.weights.convert import convert_with_task
from mobilevit.weights.serialization import read_state_dict

PARAMS = {
    "deeplabv3_mobilevit_xxs": 1_854_853,
    "deeplabv3_mobilevit_xs": 2_944_069,
    "deeplabv3_mobilevit_s": 6_357_941,
}


@pytest.mark.parametrize("name", list(PARAMS))
def test_parameter_counts(name):
    model = create_model(name)
    assert count_params(model) == PARAMS[name]
    assert len(model.state_dict()) == 341  # as ml-cvnets' DeepLabv3 checkpoint


@pytest.mark.parametrize("size", [(512, 512), (250, 190), (97, 131), (64, 64)])
def test_shapes_at_several_sizes(size):
    model = create_model("deeplabv3_mobilevit_xxs", num_classes=5).eval()
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        low, full = model.forward_lowres(x), model(x)
    assert low.shape == (2, 5, -(-size[0] // 16), -(-size[1] // 16))
    assert full.shape == (2, 5, *size)
    assert model.output_stride == 16


@pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"ml-cvnets fixtures not found at {FIXTURES}")
def test_cvnets_deeplabv3_reproduces_official_outputs(tmp_path, capsys):
    sd, _ = read_state_dict(FIXTURES / "deeplabv3_mobilevit_xxs.pt")
    io = torch.load(FIXTURES / "deeplabv3_mobilevit_xxs.io.pt", weights_only=True)
    out = tmp_path / "dl.safetensors"
    assert main(["convert", str(FIXTURES / "deeplabv3_mobilevit_xxs.pt"), str(out), "--keep-bgr"]) == 0
    assert "deeplabv3_mobilevit_xxs (21 classes) from cvnets" in capsys.readouterr().out
    model = create_model("deeplabv3_mobilevit_xxs", pretrained=out).eval()
    x = io["input"]
    with torch.no_grad():
        low, full = model.forward_lowres(x), model(x)
        stages = model.backbone.forward_stages(x)
    torch.testing.assert_close(low, io["logits_lowres"], rtol=1e-5, atol=2e-4)
    torch.testing.assert_close(full[:, :, ::7, ::7], io["output_subsampled"], rtol=1e-5, atol=2e-4)
    for i, s in enumerate(stages):
        assert max_diff(s.mean(dim=(2, 3)), io["stage_channel_means"][f"out_l{i + 1}"]) <= 1e-5
    # default conversion (RGB) on the channel-flipped input gives the same logits
    converted, task, order = convert_with_task(sd, "cvnets")
    assert (task, order) == ("segmentation", "RGB")
    rgb = create_model("deeplabv3_mobilevit_xxs").eval()
    load_state_dict_checked(rgb, converted)
    with torch.no_grad():
        torch.testing.assert_close(rgb.forward_lowres(x.flip(1)), io["logits_lowres"], rtol=1e-5, atol=2e-4)


@pytest.mark.parametrize(
    "variant", [VARIANTS[0], *(pytest.param(v, marks=pytest.mark.slow) for v in VARIANTS[1:])]
)
def test_transformers_semantic_segmentation_equivalence(variant, tmp_path):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.MobileViTConfig(num_labels=21, output_stride=16, **HF_CONFIGS[variant])
    ref = randomize(transformers.MobileViTForSemanticSegmentation(cfg)).eval()
    folder = tmp_path / "hf"
    ref.save_pretrained(folder)
    out = tmp_path / "seg.safetensors"
    assert main(["convert", str(folder), str(out), "--from", "transformers", "--keep-bgr"]) == 0
    ours = create_model(f"deeplabv3_{variant}", pretrained=out).eval()
    for size in ((512, 512), (250, 190)):
        x = torch.rand(2, 3, *size)
        with torch.no_grad():
            ref_low = ref(pixel_values=x).logits
            assert max_diff(ours.forward_lowres(x), ref_low) <= 1e-4
            ref_full = torch.nn.functional.interpolate(
                ref_low, size=size, mode="bilinear", align_corners=False
            )
            assert max_diff(ours(x), ref_full) <= 1e-4


def test_miou_hand_worked_example():
    # truth / prediction over 3 classes, one ignored pixel:
    #   truth 0 0 1 1 2 255     pred 0 1 1 1 2 0
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([0, 1, 1, 1, 2, 0]), torch.tensor([0, 0, 1, 1, 2, 255]))
    r = cm.compute()
    # class 0: TP 1, FP 0, FN 1 -> 1/2; class 1: TP 2, FP 1, FN 0 -> 2/3; class 2: 1/1
    assert r["iou"] == pytest.approx([0.5, 2 / 3, 1.0])
    assert r["miou"] == pytest.approx((0.5 + 2 / 3 + 1.0) / 3)
    assert r["pixel_acc"] == pytest.approx(4 / 5)
    cm2 = ConfusionMatrix(4)  # class 3 never occurs: left out of the mean
    cm2.update(torch.tensor([0, 1]), torch.tensor([0, 1]))
    assert cm2.compute()["miou"] == 1.0 and cm2.compute()["iou"][3] is None
    with pytest.raises(ValueError, match="outside 0..3"):
        cm2.update(torch.tensor([0]), torch.tensor([7]))


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory):
    return write_shapes_voc(tmp_path_factory.mktemp("voc"), size=64, n_train=18, n_val=4)


def test_voc_loader_on_the_builtin_set(voc_root):
    ds = VOCSegmentation(voc_root, "train", SegTrainTransform(48, (0.5, 2.0)), num_classes=5)
    assert len(ds) == 18
    torch.manual_seed(3)
    for i in range(6):
        x, m = ds[i]
        assert (
            x.shape == (3, 48, 48)
            and x.dtype == torch.float32
            and m.shape == (48, 48)
            and m.dtype == torch.int64
        )
        assert set(m.unique().tolist()) <= {0, 1, 2, 3, 4, 255}
    # a crop larger than the (down-scaled) image is padded with 255 in the mask
    small = VOCSegmentation(voc_root, "train", SegTrainTransform(96, (0.5, 0.5), hflip=0), num_classes=5)
    x, m = small[0]
    assert x.shape == (3, 96, 96) and (m == 255).float().mean() > 0.5
    val = VOCSegmentation(voc_root, "val", SegEvalTransform(32), num_classes=5)
    x, m = val[0]
    assert x.shape == (3, 32, 32) and m.shape == (64, 64)  # mask kept at full size for scoring
    with Image.open(voc_root / "SegmentationClass" / "train_00000.png") as png:
        assert png.mode == "P" and png.getpalette()[:9] == voc_palette()[:9]


def _copy(root, tmp_path):
    dst = tmp_path / "voc"
    shutil.copytree(root, dst)
    return dst


def _write_mask(path, array):
    img = Image.fromarray(array.astype(np.uint8), mode="P")
    img.putpalette(voc_palette())
    img.save(path)


def test_bad_masks_and_missing_files_are_named(voc_root, tmp_path, caplog):
    root = _copy(voc_root, tmp_path)
    bad = root / "SegmentationClass" / "train_00001.png"
    _write_mask(bad, np.full((64, 64), 9))
    ds = VOCSegmentation(root, "train", num_classes=5)
    with pytest.raises(
        DataError, match=r"train_00001.png: mask values \[9\] are outside the 5 classes and 255"
    ):
        ds[1]
    skipping = VOCSegmentation(root, "train", num_classes=5, on_bad="skip")
    assert skipping[1].path == str(bad)
    wrong_size = root / "SegmentationClass" / "train_00002.png"
    _write_mask(wrong_size, np.zeros((40, 64)))
    with pytest.raises(DataError, match=r"train_00002.png: mask size 64x40 differs from image 64x64"):
        ds[2]
    (root / "JPEGImages" / "train_00003.jpg").unlink()
    with pytest.raises(
        DataError, match=r"id 'train_00003' listed in .*train.txt has no file .*train_00003.jpg"
    ):
        VOCSegmentation(root, "train", num_classes=5)
    caplog.set_level(logging.WARNING)
    assert len(VOCSegmentation(root, "train", num_classes=5, on_bad="skip")) == 17
    assert "train_00003" in caplog.text
    with pytest.raises(DataError, match="split 'test' not found"):
        VOCSegmentation(root, "test")
    with pytest.raises(DataError, match="classes.txt names 5 classes, the model has 21"):
        VOCSegmentation(root, "val")


def _seg_cfg(tmp_path, root, *extra):
    return load_config(None, [
        "task=segmentation", "data.dataset=voc", f"data.root={root}", "data.crop_size=64", "data.eval_size=64",
        "data.batch_size=4", "data.num_workers=0", "model.name=deeplabv3_mobilevit_xxs", "model.num_classes=5",
        "optim.epochs=1", "optim.warmup_iters=2", "ema.recalibrate_bn=2", "run.progress=false", "run.threads=2",
        f"run.out_dir={tmp_path / 'run'}", *extra,
    ])  # fmt: skip


def test_train_eval_predict_with_a_last_batch_of_one(voc_root, tmp_path, capsys):
    # 18 training images in batches of 4: the last batch would hold 2; 17 (below) leaves 1
    root = _copy(voc_root, tmp_path)
    ids = (root / "ImageSets/Segmentation/train.txt").read_text().split()[:17]
    (root / "ImageSets/Segmentation/train.txt").write_text("\n".join(ids) + "\n")
    summary = train(_seg_cfg(tmp_path, root))
    out = tmp_path / "run"
    assert summary["epochs_done"] == 1 and summary["global_step"] == 4  # 17 // 4, the single one dropped
    for name in (
        "best.safetensors",
        "last.safetensors",
        "metrics.csv",
        "curves.png",
        "report.md",
        "resume.pt",
    ):
        assert (out / name).is_file(), name
    assert (
        main(
            [
                "eval",
                str(out / "best.safetensors"),
                f"data.root={root}",
                "data.dataset=voc",
                "data.eval_size=64",
                "data.num_workers=0",
                f"run.out_dir={tmp_path / 'ev'}",
            ]
        )
        == 0
    )
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0 <= res["miou"] <= 1 and set(res["iou"]) == {
        "background",
        "ellipse",
        "rectangle",
        "triangle",
        "star",
    }
    img = root / "JPEGImages" / "val_00000.jpg"
    assert (
        main(
            [
                "predict",
                str(img),
                "--weights",
                str(out / "best.safetensors"),
                "--out-dir",
                str(tmp_path / "p"),
            ]
        )
        == 0
    )
    overlay = tmp_path / "p" / "val_00000_overlay.png"
    with Image.open(overlay) as im:
        assert im.size == (64, 64) and im.mode == "RGB"
    with Image.open(tmp_path / "p" / "val_00000_mask.png") as im:
        assert im.mode == "P" and set(np.unique(np.array(im))) <= {0, 1, 2, 3, 4}


def test_too_few_images_for_one_batch_is_a_clear_error(voc_root, tmp_path):
    with pytest.raises(TrainingError, match="cannot fill one batch of 32"):
        Trainer(_seg_cfg(tmp_path, voc_root, "data.batch_size=32"))


def test_backbone_weights_from_a_classifier(tmp_path):
    timm = pytest.importorskip("timm")
    ref = randomize(timm.create_model("mobilevit_xxs", pretrained=False)).eval()
    path = tmp_path / "timm.pth"
    torch.save(ref.state_dict(), path)
    seg = create_model("deeplabv3_mobilevit_xxs", backbone_weights=str(path)).eval()
    x = torch.rand(1, 3, 96, 96)
    with torch.no_grad():
        ours = seg.backbone.forward_stages(x, [3])[0]  # L4: before the output-stride change
        theirs = ref.stages[:4](ref.stem(x))
    assert max_diff(ours, theirs) <= 1e-4
