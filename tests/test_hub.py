"""The Hugging Face Hub, offline: ``hf-hub:`` names read from a pre-filled huggingface_hub cache
(``HF_HUB_OFFLINE=1``) in our, timm's and transformers' layouts; ``save_pretrained`` folders with
their config and model card; ``push-to-hub`` with the Hub's HTTP answered by a local stand-in."""

import base64
import importlib.util
import json
import shutil

import huggingface_hub
import pytest
import torch
from _utils import max_diff, randomize
from huggingface_hub.utils import _http as hf_http

from mobilevit import create_model
from mobilevit.cli import main
from mobilevit.loading import load_model
from mobilevit.weights.serialization import WeightsMeta, write_weights

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty huggingface_hub cache under tmp_path, offline."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def put_in_cache(cache, repo_id, folder):
    """Lay ``folder`` out in the cache as the ``main`` snapshot of ``repo_id`` (what a download leaves)."""
    storage = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(folder, storage / "snapshots" / SHA)
    (storage / "refs").mkdir(parents=True)
    (storage / "refs" / "main").write_text(SHA)


def trained_like(tmp_path, arch="mobilevit_xxs", num_classes=10):
    """A weights file as `mobilevit train` leaves it: metadata with the validation metric, and
    the run's config.yaml beside it."""
    run = tmp_path / "run"
    run.mkdir()
    model = randomize(create_model(arch, num_classes=num_classes)).eval()
    meta = WeightsMeta(
        arch=arch,
        num_classes=num_classes,
        classes=[str(i) for i in range(num_classes)],
        extra={"img_size": 64, "eval_resize": 64, "val_top1": 0.9611, "epoch": 20, "weights": "ema"},
    )
    write_weights(model.state_dict(), run / "best.safetensors", meta)
    (run / "config.yaml").write_text(
        "data:\n  dataset: digits\n  img_size: 64\nmodel:\n  name: mobilevit_xxs\n"
    )
    return model, run / "best.safetensors"


def test_save_pretrained_folder_round_trips_through_an_hf_hub_name(tmp_path, hub_cache):
    model, weights = trained_like(tmp_path)
    folder = tmp_path / "repo"
    assert (
        main(
            ["push-to-hub", str(weights), "me/digits-xxs", "--license", "apache-2.0", "--folder", str(folder)]
        )
        == 0
    )
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["arch"] == "mobilevit_xxs" and config["num_classes"] == 10
    assert config["preprocessing"]["crop_size"] == 64 and config["classes"][3] == "3"
    card = (folder / "README.md").read_text()
    params = f"{sum(p.numel() for p in model.parameters()):,}"
    for field in (
        "license: apache-2.0",
        "library_name: mobilevit",
        "digits",
        "0.9611",
        params,
        "GMACs",
        "ms |",
    ):
        assert field in card, field
    assert "mobilevit eval best.safetensors --config config.yaml" in card
    put_in_cache(hub_cache, "me/digits-xxs", folder)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        again = create_model("hf-hub:me/digits-xxs").eval()
        assert max_diff(again(x), model(x)) == 0.0
        loaded, meta = load_model("hf-hub:me/digits-xxs")
        assert meta.classes[3] == "3" and loaded.pretrained_cfg["crop_size"] == 64
    assert main(["convert", "hf-hub:me/digits-xxs", str(tmp_path / "t.safetensors"), "--to", "timm"]) == 0

    # the other commands that read weights take the name too
    from PIL import Image

    Image.new("RGB", (80, 70), (200, 40, 90)).save(tmp_path / "img.png")
    assert main(["predict", str(tmp_path / "img.png"), "--weights", "hf-hub:me/digits-xxs", "--json"]) == 0
    onnx = tmp_path / "m.onnx"
    if importlib.util.find_spec("onnxruntime"):
        assert main(["export", "hf-hub:me/digits-xxs", "--format", "onnx", "--out", str(onnx)]) == 0
        assert onnx.is_file()


def test_timm_and_transformers_repos_are_read_by_their_layout(tmp_path, hub_cache):
    timm = pytest.importorskip("timm")
    hf = pytest.importorskip("transformers")
    from safetensors.torch import save_file

    ref = randomize(timm.create_model("mobilevit_xxs", num_classes=7)).eval()
    folder = tmp_path / "timm_repo"
    folder.mkdir()
    save_file(ref.state_dict(), str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"architecture": "mobilevit_xxs", "num_classes": 7}))
    put_in_cache(hub_cache, "someone/timm-xxs", folder)

    cfg = hf.MobileViTV2Config(width_multiplier=0.5, num_labels=4)
    hf_ref = randomize(hf.MobileViTV2ForImageClassification(cfg)).eval()
    hf_ref.save_pretrained(tmp_path / "hf_repo")
    put_in_cache(hub_cache, "someone/hf-v2", tmp_path / "hf_repo")

    x = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        assert max_diff(create_model("hf-hub:someone/timm-xxs").eval()(x), ref(x)) <= 1e-5
        ours = create_model("hf-hub:someone/hf-v2").eval()
        assert ours.num_classes == 4
        assert max_diff(ours(x), hf_ref(pixel_values=x).logits) <= 1e-4
    out = tmp_path / "v2.safetensors"
    assert main(["convert", "hf-hub:someone/hf-v2", str(out)]) == 0
    assert load_model(out)[1].arch == "mobilevitv2_050"


def test_hub_bad_input_is_a_clear_error(tmp_path, hub_cache, capsys):
    with pytest.raises(Exception, match=r"me/absent is not in the Hugging Face cache .* HF_HUB_OFFLINE=1"):
        create_model("hf-hub:me/absent")
    assert main(["convert", "hf-hub:me/absent", str(tmp_path / "x.safetensors")]) == 2
    assert "HF_HUB_OFFLINE" in capsys.readouterr().err
    other = tmp_path / "resnet"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "resnet"}))
    (other / "model.safetensors").write_bytes(b"")
    put_in_cache(hub_cache, "me/resnet", other)
    with pytest.raises(Exception, match="holds a transformers 'resnet' model, not a MobileViT"):
        create_model("hf-hub:me/resnet")
    with pytest.raises(Exception, match="is not a Hub name"):
        create_model("hf-hub:nothing")


def test_a_card_field_that_would_be_empty_stops_before_writing(tmp_path, capsys):
    model = create_model("mobilevit_xxs", num_classes=3)
    bare = tmp_path / "bare.safetensors"
    # a BGR-stemmed file (converted with --keep-bgr): the repo must say BGR, not the usual RGB
    write_weights(
        model.state_dict(), bare, WeightsMeta(arch="mobilevit_xxs", num_classes=3, channel_order="BGR")
    )
    folder = tmp_path / "repo"
    assert main(["push-to-hub", str(bare), "me/x", "--folder", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "would leave these empty: licence (--license); training data (--dataset); validation metric" in err
    assert not folder.exists() and not any(p.name.startswith(".") for p in tmp_path.iterdir())
    args = ["--license", "mit", "--dataset", "my photos", "--metric", "top1=0.5", "--no-latency"]
    assert main(["push-to-hub", str(bare), "me/x", "--folder", str(folder), *args]) == 0
    assert "the uploader (not measured by this package)" in (folder / "README.md").read_text()
    assert json.loads((folder / "config.json").read_text())["channel_order"] == "BGR"
    assert "| input | BGR in [0, 1]" in (folder / "README.md").read_text()
    assert main(["push-to-hub", str(bare), "me/x", "--folder", str(folder), *args]) == 2  # not over a folder
    assert "exists and is not empty" in capsys.readouterr().err


def test_push_to_hub_uploads_the_folder_it_made(tmp_path, monkeypatch):
    """The Hub's HTTP API answered by a stand-in transport: what would be uploaded is checked for real."""
    _, weights = trained_like(tmp_path)
    seen, uploaded = [], {}
    probe = hf_http.default_client_factory()  # the HTTP package huggingface_hub uses (httpx or httpx2)
    http = importlib.import_module(type(probe).__module__.split(".")[0])
    probe.close()

    def handler(request):
        path = request.url.path
        seen.append(f"{request.method} {path}")
        if path == "/api/repos/create":
            body = json.loads(request.content)
            assert body["name"] == "digits-xxs" and body["organization"] == "me" and not body.get("private")
            return http.Response(200, json={"url": "https://huggingface.co/me/digits-xxs"})
        if path == "/api/validate-yaml":  # the model card's metadata, checked before the commit
            assert "library_name: mobilevit" in json.loads(request.content)["content"]
            return http.Response(200, json={"errors": [], "warnings": []})
        if path.endswith("/preupload/main"):
            files = json.loads(request.content)["files"]
            return http.Response(
                200,
                json={
                    "files": [
                        {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files
                    ]
                },
            )
        if path.endswith("/commit/main"):
            for line in request.content.decode().splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    uploaded[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            return http.Response(
                200, json={"commitUrl": "https://huggingface.co/me/digits-xxs/commit/abc", "commitOid": "abc"}
            )
        return http.Response(404, json={"error": f"stand-in Hub: no route for {request.method} {path}"})

    huggingface_hub.set_client_factory(lambda: http.Client(transport=http.MockTransport(handler)))
    monkeypatch.setenv("HF_TOKEN", "hf_stand_in_token")
    try:
        args = ["push-to-hub", str(weights), "me/digits-xxs", "--license", "apache-2.0", "--no-latency"]
        assert main(args) == 0, seen
    finally:
        huggingface_hub.set_client_factory(hf_http.default_client_factory)
    assert sorted(uploaded) == ["README.md", "config.json", "model.safetensors"], seen
    (tmp_path / "got.safetensors").write_bytes(uploaded["model.safetensors"])
    again, meta = load_model(tmp_path / "got.safetensors")
    assert meta.extra["val_top1"] == 0.9611
    original = load_model(weights)[0].state_dict()
    assert all(torch.equal(v, original[k]) for k, v in again.state_dict().items())
    assert json.loads(uploaded["config.json"])["arch"] == "mobilevit_xxs"
