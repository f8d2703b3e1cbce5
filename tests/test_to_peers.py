"""Weights out: ``mobilevit convert WEIGHTS OUT --to timm | transformers | cvnets``. Each target's
own code (timm, transformers) loads the result and gives our outputs; the reference checkpoints
(ml-cvnets, MobileViTv3) come back out byte for byte; ours -> peer -> ours is exact."""

import json

import numpy as np
import pytest
import torch
from _utils import FIXTURES, FIXTURES_V2, FIXTURES_V3, max_diff, randomize
from PIL import Image

from mobilevit import create_model
from mobilevit.cli import main
from mobilevit.data.transforms import EvalTransform
from mobilevit.loading import load_model
from mobilevit.weights.serialization import WeightsMeta, read_state_dict, write_weights


def ours_file(tmp_path, arch, task="classification", num_classes=None, classes=None, **extra):
    """A random-weight file in our format, as a run here would leave it."""
    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    model = randomize(create_model(arch, **kwargs)).eval()
    n = num_classes or (21 if task == "segmentation" else 1000)
    path = tmp_path / f"{arch}.safetensors"
    write_weights(
        model.state_dict(),
        path,
        WeightsMeta(arch=arch, task=task, num_classes=n, classes=classes, extra=extra),
    )
    return model, path


def assert_same_weights(a, b):
    sa, _ = read_state_dict(a)
    sb, _ = read_state_dict(b)
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("arch", ["mobilevit_xxs", "mobilevitv2_050"])
def test_to_timm_loads_in_timm_with_our_logits_and_comes_back_exactly(tmp_path, capsys, arch):
    timm = pytest.importorskip("timm")
    model, src = ours_file(tmp_path, arch, num_classes=10)
    out = tmp_path / "timm.safetensors"
    assert main(["convert", str(src), str(out), "--to", "timm"]) == 0
    assert "checked in timm itself: its model gives our outputs" in capsys.readouterr().out
    # num_classes in the overlay too, or timm drops a head whose size differs from its default's
    overlay = dict(file=str(out), num_classes=10)
    peer = timm.create_model(arch, pretrained=True, pretrained_cfg_overlay=overlay, num_classes=10)
    x = torch.rand(2, 3, 160, 128)
    with torch.no_grad():
        assert max_diff(peer.eval()(x), model(x)) <= 1e-4
    back = tmp_path / "back.safetensors"
    assert main(["convert", str(out), str(back), "--model", arch]) == 0
    assert_same_weights(src, back)


def _image(tmp_path, seed=0):
    """A smooth photo-like image (resampling kernels agree on it, unlike on noise), colours unequal
    across channels so that a wrong channel order shows."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:320, 0:290] / 40.0
    chans = [
        np.sin(xx * rng.uniform(0.5, 2) + yy * rng.uniform(0.5, 2) + rng.uniform(0, 6)) for _ in range(3)
    ]
    img = ((np.stack(chans, -1) * [0.5, 0.3, 0.1] + 0.5) * 255).astype(np.uint8)
    path = tmp_path / f"img{seed}.png"
    Image.fromarray(img).save(path)
    return path


@pytest.mark.parametrize("arch", ["mobilevit_xs", "mobilevitv2_050"])
def test_to_transformers_with_its_own_preprocessing_gives_our_predictions(tmp_path, capsys, arch):
    hf = pytest.importorskip("transformers")
    classes = [f"class_{i}" for i in range(5)]
    # 256: transformers' v2 skips the resize to the patch grid where a map is odd (224 -> 7x7)
    model, src = ours_file(tmp_path, arch, num_classes=5, classes=classes, img_size=256, eval_resize=288)
    out = tmp_path / "hf"
    assert main(["convert", str(src), str(out), "--to", "transformers"]) == 0
    assert "checked in transformers itself: its model gives our outputs" in capsys.readouterr().out
    peer_cls = hf.MobileViTV2ForImageClassification if "v2" in arch else hf.MobileViTForImageClassification
    peer = peer_cls.from_pretrained(out).eval()
    assert peer.config.id2label[3] == "class_3"
    processor = hf.AutoImageProcessor.from_pretrained(out)
    assert processor.crop_size == {"height": 256, "width": 256}
    assert processor.do_flip_channel_order == ("v2" not in arch)  # v1 takes BGR, v2 RGB
    ours, _ = load_model(src)
    for seed in range(2):
        with Image.open(_image(tmp_path, seed)) as im:
            x_ours = EvalTransform(256, 288)(im.convert("RGB"))[None]
            x_hf = processor(images=im.convert("RGB"), return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            ref, got = ours(x_ours), peer(pixel_values=x_hf).logits
        # the resize kernels of torchvision and transformers differ by rounding: close logits, and the
        # same answer wherever the top two are further apart than that (a wrong flip moves them far)
        diff = max_diff(got, ref)
        assert diff <= 0.05 * ref.abs().max().item()
        top2 = ref.topk(2).values[0]
        if top2[0] - top2[1] > 2 * diff:
            assert got.argmax(1).item() == ref.argmax(1).item()
    back = tmp_path / "back.safetensors"
    assert main(["convert", str(out), str(back)]) == 0
    assert_same_weights(src, back)


def test_a_v1_segmenter_to_transformers(tmp_path):
    hf = pytest.importorskip("transformers")
    model, src = ours_file(tmp_path, "deeplabv3_mobilevit_xxs", task="segmentation", eval_size=256)
    out = tmp_path / "hf_seg"
    assert main(["convert", str(src), str(out), "--to", "transformers"]) == 0
    peer = hf.MobileViTForSemanticSegmentation.from_pretrained(out).eval()
    x = torch.rand(1, 3, 256, 192)
    with torch.no_grad():
        assert max_diff(peer(pixel_values=x.flip(1)).logits, model.forward_lowres(x)) <= 1e-4
    back = tmp_path / "back.safetensors"
    assert main(["convert", str(out), str(back)]) == 0
    assert_same_weights(src, back)


@pytest.mark.parametrize(
    ("folder", "name"),
    [
        (FIXTURES, "mobilevit_xxs"),
        (FIXTURES, "deeplabv3_mobilevit_xxs"),
        (FIXTURES_V2, "mobilevitv2_050"),
        (FIXTURES_V3, "mobilevitv3_xxs"),
        (FIXTURES_V3, "mobilevitv3_050"),
    ],
)
def test_reference_checkpoints_come_back_out_to_cvnets_exactly(tmp_path, capsys, folder, name):
    if not (folder / f"{name}.pt").is_file():
        pytest.skip(f"no {name} fixture at {folder}")
    ours, back = tmp_path / "ours.safetensors", tmp_path / f"{name}.pt"
    assert main(["convert", str(folder / f"{name}.pt"), str(ours)]) == 0
    assert main(["convert", str(ours), str(back), "--to", "cvnets"]) == 0
    assert "checked by converting back, exactly" in capsys.readouterr().out
    ref = torch.load(folder / f"{name}.pt", weights_only=True)
    got = torch.load(back, weights_only=True)
    ref = {k: v for k, v in ref.items() if ".aux_head." not in k}  # a training-only head
    assert got.keys() == ref.keys()
    assert all(torch.equal(got[k], ref[k]) for k in ref), "not the reference tensors"


def test_v2_segmenters_to_cvnets_match_the_manifest(tmp_path):
    manifest = json.loads((FIXTURES_V2 / "deeplabv3_mobilevitv2_100.keys.json").read_text())
    _, src = ours_file(tmp_path, "deeplabv3_mobilevitv2_100", task="segmentation")
    out = tmp_path / "seg.pt"
    assert main(["convert", str(src), str(out), "--to", "cvnets"]) == 0
    got = torch.load(out, weights_only=True)
    want = {k: tuple(s) for k, s in manifest["state_dict"] if ".aux_head." not in k}
    assert {k: tuple(v.shape) for k, v in got.items()} == want


def test_targets_that_cannot_hold_the_model_say_so_before_any_work(tmp_path, capsys):
    cases = [
        ("ssdlite_mobilevit_xxs", "detection", "transformers", "t", "has no MobileViT SSDLite detector"),
        ("mobilevitv3_xxs", "classification", "timm", "t.safetensors", "timm has no MobileViT v3"),
        ("mobilevitv3_050", "classification", "transformers", "t", "transformers has no MobileViT v3"),
        (
            "deeplabv3_mobilevit_xxs",
            "segmentation",
            "timm",
            "t.safetensors",
            "timm has MobileViT classifiers only",
        ),
        ("deeplabv3_mobilevitv2_050", "segmentation", "transformers", "t", "leaves out the dilation"),
        ("mobilevit_xxs", "classification", "timm", "t.pt", "writes a .safetensors file"),
        ("mobilevit_xxs", "classification", "cvnets", "t.safetensors", "writes a .pt checkpoint"),
    ]
    for arch, task, target, out, message in cases:
        model = create_model(arch)
        path = tmp_path / f"{arch}.safetensors"
        write_weights(model.state_dict(), path, WeightsMeta(arch=arch, task=task))
        assert main(["convert", str(path), str(tmp_path / out), "--to", target]) != 0, arch
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (arch, err)
        assert not (tmp_path / out).exists()
    odd = tmp_path / "odd.safetensors"
    write_weights(
        create_model("mobilevit_xxs", patch_size=4).state_dict(),
        odd,
        WeightsMeta(arch="mobilevit_xxs", model_overrides={"patch_size": 4}),
    )
    assert main(["convert", str(odd), str(tmp_path / "o.safetensors"), "--to", "timm"]) != 0
    assert "patch_size changed" in capsys.readouterr().err
    assert main(["convert", str(odd), str(tmp_path / "o.pt"), "--to", "cvnets", "--keep-bgr"]) == 2
    assert "--keep-bgr are for converting into this package" in capsys.readouterr().err
    (tmp_path / "taken").mkdir()
    _, src = ours_file(tmp_path, "mobilevit_xxs")
    assert main(["convert", str(src), str(tmp_path / "taken"), "--to", "transformers"]) != 0
    assert "exists" in capsys.readouterr().err
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no half-written temp folder
