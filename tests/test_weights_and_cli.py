"""Loading weights (tags, paths, foreign formats), mismatch errors and the convert command."""

import json
import shutil

import pytest
import torch
from _utils import FIXTURES, HF_CONFIGS, max_diff, randomize

from mobilevit import create_model
from mobilevit.cli import main
from mobilevit.weights import WEIGHTS, CheckpointMismatchError, cache_dir, list_weights
from mobilevit.weights.serialization import CheckpointError, read_state_dict, save_weights

timm = pytest.importorskip("timm")


def _timm_checkpoint(tmp_path, name="mobilevit_xxs", num_classes=1000):
    ref = randomize(timm.create_model(name, pretrained=False, num_classes=num_classes)).eval()
    path = tmp_path / f"{name}_timm.pth"
    torch.save({"state_dict": ref.state_dict()}, path)  # wrapped, as training scripts save it
    return ref, path


def test_convert_cli_timm_round_trip(tmp_path, capsys):
    ref, src = _timm_checkpoint(tmp_path)
    out = tmp_path / "xxs.safetensors"
    assert main(["convert", str(src), str(out), "--from", "timm"]) == 0
    assert "mobilevit_xxs (1000 classes) from timm, takes RGB" in capsys.readouterr().out
    model = create_model("mobilevit_xxs", pretrained=out).eval()
    assert model.pretrained_cfg["channel_order"] == "RGB"
    x = torch.rand(2, 3, 200, 232)
    with torch.no_grad():
        assert max_diff(model(x), ref(x)) <= 1e-4
    # foreign checkpoints also load directly (converted on the fly)
    direct = create_model("mobilevit_xxs", pretrained=src).eval()
    with torch.no_grad():
        assert max_diff(direct(x), ref(x)) <= 1e-4


def test_convert_cli_transformers_folder(tmp_path, capsys):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.MobileViTConfig(num_labels=10, **HF_CONFIGS["mobilevit_xs"])
    ref = randomize(transformers.MobileViTForImageClassification(cfg)).eval()
    folder = tmp_path / "hf"
    ref.save_pretrained(folder)  # model.safetensors + config.json
    out = tmp_path / "xs.safetensors"
    assert main(["convert", str(folder), str(out), "--from", "transformers"]) == 0
    assert "mobilevit_xs (10 classes) from transformers, takes RGB" in capsys.readouterr().out
    model = create_model("mobilevit_xs", num_classes=10, pretrained=out).eval()
    x = torch.rand(2, 3, 256, 256)
    with torch.no_grad():
        assert max_diff(model(x.flip(1)), ref(pixel_values=x).logits) <= 1e-4  # HF input is BGR
    # --keep-bgr keeps the original convention, recorded in the file
    out_bgr = tmp_path / "xs_bgr.safetensors"
    assert main(["convert", str(folder), str(out_bgr), "--keep-bgr"]) == 0
    _, meta = read_state_dict(out_bgr)
    assert meta["channel_order"] == "BGR"
    model = create_model("mobilevit_xs", num_classes=10, pretrained=out_bgr).eval()
    assert model.pretrained_cfg["channel_order"] == "BGR"
    with torch.no_grad():
        assert max_diff(model(x), ref(pixel_values=x).logits) <= 1e-4


@pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"ml-cvnets fixtures not found at {FIXTURES}")
def test_convert_cli_cvnets_reproduces_fixture(tmp_path, capsys):
    out = tmp_path / "xxs.safetensors"
    assert (
        main(["convert", str(FIXTURES / "mobilevit_xxs.pt"), str(out), "--from", "cvnets", "--keep-bgr"]) == 0
    )
    assert "takes BGR input" in capsys.readouterr().out
    io = torch.load(FIXTURES / "mobilevit_xxs.io.pt", weights_only=True)
    model = create_model("mobilevit_xxs", pretrained=out).eval()
    with torch.no_grad():
        assert max_diff(model(io["input"]), io["output"]) <= 1e-5


def test_convert_cli_wrong_source_and_variant(tmp_path, capsys):
    _, src = _timm_checkpoint(tmp_path)
    assert main(["convert", str(src), str(tmp_path / "o.safetensors"), "--from", "cvnets"]) == 2
    assert "--from cvnets given, but the keys look like a timm checkpoint" in capsys.readouterr().err
    assert main(["convert", str(src), str(tmp_path / "o.safetensors"), "--model", "mobilevit_s"]) == 2
    err = capsys.readouterr().err
    assert "mis-shaped keys" in err and "stem.conv.weight" not in err.split("mis-shaped")[0]
    assert not (tmp_path / "o.safetensors").exists()


def test_checkpoint_of_another_variant_lists_keys(tmp_path):
    _, src = _timm_checkpoint(tmp_path, "mobilevit_xxs")
    with pytest.raises(CheckpointMismatchError) as e:
        create_model("mobilevit_xs", pretrained=src)
    msg = str(e.value)
    assert str(src) in msg and "mis-shaped keys" in msg
    assert "stages.0.0.expand.conv.weight (checkpoint (32, 16, 1, 1) vs model (64, 16, 1, 1))" in msg


def test_class_count_mismatch_needs_reset_classifier(tmp_path):
    ref, src = _timm_checkpoint(tmp_path, num_classes=1000)
    with pytest.raises(CheckpointMismatchError, match="(?s)head.fc.weight.*reset_classifier=True"):
        create_model("mobilevit_xxs", num_classes=5, pretrained=src)
    model = create_model("mobilevit_xxs", num_classes=5, pretrained=src, reset_classifier=True).eval()
    assert model.head.fc.out_features == 5
    x = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        assert max_diff(model.forward_features(x), ref.forward_features(x)) <= 1e-4


def test_missing_and_unexpected_keys_are_listed(tmp_path):
    sd = create_model("mobilevit_xxs").state_dict()
    sd.pop("conv_exp.norm.bias")
    sd["extra.weight"] = torch.zeros(1)
    path = save_weights(sd, tmp_path / "w.safetensors", {"format": "mobilevit"})
    with pytest.raises(
        CheckpointMismatchError,
        match=r"(?s)missing keys \(1\): conv_exp.norm.bias.*unexpected keys \(1\): extra.weight",
    ):
        create_model("mobilevit_xxs", pretrained=path)


@pytest.mark.parametrize(
    "content, msg",
    [
        (b"", "checkpoint file is empty"),
        (b"this is not a checkpoint at all, just text\n" * 10, r"not a checkpoint \(unknown format\)"),
        (
            b"\xff\xd8\xff\xe0\x00\x10JFIF" + bytes(64),
            r"not a checkpoint \(a JPEG image\)",
        ),  # a photo as weights
        (b"\x80\x04 cut short", "not a readable PyTorch checkpoint"),
    ],
)
def test_bad_files_name_the_path(tmp_path, content, msg):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=msg) as e:
        create_model("mobilevit_xxs", pretrained=path)
    assert str(path) in str(e.value)


def test_truncated_checkpoints_name_the_path(tmp_path):
    sd = create_model("mobilevit_xxs").state_dict()
    pt, st = tmp_path / "w.pt", tmp_path / "w.safetensors"
    torch.save(sd, pt)
    save_weights(sd, st, {"format": "mobilevit"})
    for path in (pt, st):
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        with pytest.raises(CheckpointError) as e:
            create_model("mobilevit_xxs", pretrained=path)
        assert str(path) in str(e.value)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        read_state_dict(tmp_path / "nope.pt")
    with pytest.raises(FileNotFoundError, match="neither a weight tag"):
        create_model("mobilevit_xxs", pretrained=tmp_path / "nope.pt")


def test_weight_specs_are_data_and_tags_resolve_offline(tmp_path):
    v1 = [t for t in list_weights() if "mobilevitv2_" not in t]
    assert len(v1) == 18 and list_weights("mobilevit_s") == [
        "mobilevit_s.cvnets_in1k",
        "mobilevit_s.hf_in1k",
        "mobilevit_s.timm_in1k",
    ]
    spec = WEIGHTS["mobilevit_xxs.cvnets_in1k"]
    assert spec.channel_order == "BGR" and spec.mean == (0.0, 0.0, 0.0) and spec.crop_size == 256
    assert WEIGHTS["mobilevit_xxs.timm_in1k"].channel_order == "RGB"
    # MobileViT v2: timm's copies, all 7 widths at 256 and the in22k fine-tunes of 1.5 / 1.75 / 2.0 at 256 and 384
    v2 = [t for t in list_weights() if t.startswith("mobilevitv2_") and ".timm_" in t]
    assert len(v2) == 13 and all(
        WEIGHTS[t].channel_order == "RGB" and WEIGHTS[t].interpolation == "bicubic" for t in v2
    )
    # and the transformers hub's v2 repos (classification 1.0 / 2.0, VOC DeepLabv3 1.0 / 1.5): read as RGB
    hf_v2 = [t for t in list_weights() if "mobilevitv2_" in t and ".hf_" in t]
    assert sorted(hf_v2) == [
        "deeplabv3_mobilevitv2_100.hf_voc", "deeplabv3_mobilevitv2_150.hf_voc",
        "mobilevitv2_100.hf_in1k", "mobilevitv2_200.hf_in1k",
    ]  # fmt: skip
    assert all(WEIGHTS[t].channel_order == "RGB" and "flips to BGR" in WEIGHTS[t].notes for t in hf_v2)
    assert WEIGHTS["mobilevitv2_200.timm_in22k_ft_in1k_384"].crop_size == 384
    # downloads are off in the tests: a clear error that says where the file goes
    with pytest.raises(
        FileNotFoundError, match=r"not in the local cache .*MOBILEVIT_OFFLINE.*mobilevit_xxs\.pt"
    ):
        create_model("mobilevit_xxs", pretrained="mobilevit_xxs.cvnets_in1k")
    if FIXTURES.is_dir():  # a cached Apple-format file is found by its tag and converted to RGB
        cache_dir().mkdir(parents=True)
        shutil.copy(FIXTURES / "mobilevit_xxs.pt", cache_dir() / spec.filename)
        model = create_model("mobilevit_xxs", pretrained="mobilevit_xxs.cvnets_in1k").eval()
        cfg = model.pretrained_cfg
        assert cfg["tag"] == spec.tag and cfg["source_format"] == "cvnets" and cfg["channel_order"] == "RGB"
        io = torch.load(FIXTURES / "mobilevit_xxs.io.pt", weights_only=True)
        with torch.no_grad():
            assert max_diff(model.forward_features(io["input"].flip(1)), io["features"]) <= 1e-4


def test_cli_models_and_bench(capsys):
    assert main(["models", "mobilevit_xx*"]) == 0
    assert "1,272,024" in capsys.readouterr().out
    assert main(["bench", "--models", "mobilevit_xxs", "--img-size", "64", "--iters", "2", "--json"]) == 0
    captured = capsys.readouterr()
    assert "| mobilevit_xxs | 1,272,024 |" in captured.err and "rows" in json.loads(captured.out)
