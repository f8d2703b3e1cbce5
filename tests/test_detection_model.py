"""SSDLite-MobileViT: shapes, anchors, the official outputs, training steps and decoding."""

import pytest
import torch
from _utils import FIXTURES

from mobilevit import create_model
from mobilevit.cli import main
from mobilevit.heads.ssdlite import SSDLite
from mobilevit.weights import CheckpointMismatchError
from mobilevit.weights.serialization import read_state_dict

PARAMS = {  # at 81 classes; the XXS count is ml-cvnets' own (fixtures manifest)
    "ssdlite_mobilevit_xxs": 1_755_050,
    "ssdlite_mobilevit_xs": 2_742_042,
    "ssdlite_mobilevit_s": 5_738_826,
}
needs_fixtures = pytest.mark.skipif(
    not FIXTURES.is_dir(), reason=f"ml-cvnets fixtures not found at {FIXTURES}"
)


@pytest.mark.parametrize("name", PARAMS)
def test_parameter_counts_and_raw_shapes(name):
    model = create_model(name).eval()
    assert isinstance(model, SSDLite)
    assert sum(p.numel() for p in model.parameters()) == PARAMS[name]
    paper = {"xxs": 1.75e6, "xs": 2.7e6, "s": 5.7e6}[name.rsplit("_", 1)[1]]
    assert abs(PARAMS[name] - paper) / paper < 0.02
    with torch.no_grad():
        logits, boxes = model.forward_raw(torch.rand(1, 3, 320, 320))
    assert logits.shape == (1, 3232, 81) and boxes.shape == (1, 3232, 4)


def test_feature_pyramid_levels():
    model = create_model("ssdlite_mobilevit_xxs", num_classes=5).eval()
    feats = model.backbone(torch.rand(2, 3, 320, 320))
    assert [tuple(f.shape[1:]) for f in feats.values()] == [
        (64, 20, 20),
        (80, 10, 10),
        (256, 5, 5),
        (128, 3, 3),
        (128, 2, 2),
        (64, 1, 1),
    ]
    assert model.backbone.out_strides == [16, 32, 64, 128, 256, -1]
    assert model.anchor_generator.num_anchors_per_location() == [6, 6, 6, 6, 6, 4]


@needs_fixtures
def test_anchors_match_cvnets():
    io = torch.load(FIXTURES / "ssdlite_mobilevit_xxs.io.pt", weights_only=True)
    anchors = create_model("ssdlite_mobilevit_xxs").anchors()
    assert anchors.shape == (3232, 4)
    torch.testing.assert_close(anchors, io["anchors"], rtol=0, atol=1e-6)


@needs_fixtures
def test_cvnets_ssdlite_reproduces_official_outputs(tmp_path, capsys):
    """convert CLI -> our model: raw logits / offsets and decoded boxes equal ml-cvnets' own."""
    io = torch.load(FIXTURES / "ssdlite_mobilevit_xxs.io.pt", weights_only=True)
    out = tmp_path / "ssd.safetensors"
    assert main(["convert", str(FIXTURES / "ssdlite_mobilevit_xxs.pt"), str(out)]) == 0
    assert "ssdlite_mobilevit_xxs (81 classes) from cvnets" in capsys.readouterr().out
    _, meta = read_state_dict(out)
    assert meta["task"] == "detection" and meta["channel_order"] == "RGB"
    model = create_model("ssdlite_mobilevit_xxs", pretrained=out).eval()
    assert sum(p.numel() for p in model.parameters()) == io["num_parameters"]
    x = io["input"].flip(1)  # the fixture's BGR input, as RGB for the converted weights
    with torch.no_grad():
        logits, offsets = model.forward_raw(x)
    torch.testing.assert_close(logits, io["confidences"], rtol=0, atol=1e-5)
    torch.testing.assert_close(offsets, io["locations"], rtol=0, atol=1e-5)
    a = model.anchors()
    xyxy = torch.cat([a[:, :2] - a[:, 2:] / 2, a[:, :2] + a[:, 2:] / 2], 1)
    decoded = model.box_coder.decode_single(offsets[0], xyxy * 320) / 320
    torch.testing.assert_close(decoded, io["boxes_corner"][0], rtol=0, atol=1e-5)


def _targets(n_boxes: list[int], size: int = 320) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    out = []
    for n in n_boxes:
        xy = torch.rand(n, 2, generator=g) * size * 0.6
        wh = 20 + torch.rand(n, 2, generator=g) * size * 0.3
        out.append({"boxes": torch.cat([xy, xy + wh], 1), "labels": torch.randint(1, 5, (n,), generator=g)})
    return out


@pytest.mark.parametrize("n_boxes", [[2, 3], [0, 1], [0, 0]], ids=["objects", "mixed", "no-objects"])
def test_train_step_with_and_without_objects(n_boxes):
    torch.manual_seed(0)
    model = create_model("ssdlite_mobilevit_xxs", num_classes=5, ssd={"image_size": (192, 192)}).train()
    images = [torch.rand(3, 192, 192) for _ in n_boxes]
    losses = model(images, _targets(n_boxes, 192))
    assert set(losses) == {"bbox_regression", "classification"}
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert all(torch.isfinite(g).all() for g in grads)
    if sum(n_boxes) == 0:  # nothing to match: zero loss, as in torchvision and ml-cvnets
        assert total.item() == 0.0
    else:
        assert total.item() > 0 and len(grads) > 0


def test_eval_returns_detections_in_input_pixels_and_decode_matches():
    torch.manual_seed(0)
    model = create_model("ssdlite_mobilevit_xxs", num_classes=3).eval()
    image = torch.rand(3, 240, 400)  # any size: resized to 320 inside, boxes mapped back
    with torch.no_grad():
        (det,) = model([image])
        assert set(det) == {"boxes", "scores", "labels"}
        assert det["boxes"].shape[1] == 4 and len(det["boxes"]) <= 200
        assert (det["boxes"][:, 0::2] <= 400 + 1e-3).all() and (det["boxes"][:, 1::2] <= 240 + 1e-3).all()
        assert ((det["labels"] >= 1) & (det["labels"] < 3)).all()
        # the export path: raw outputs on the resized input, decoded separately, give the same
        x = torch.nn.functional.interpolate(
            image[None], size=(320, 320), mode="bilinear", align_corners=False
        )
        (raw,) = model.decode(*model.forward_raw(x))
    scale = torch.tensor([400 / 320, 240 / 320] * 2)
    torch.testing.assert_close(raw["boxes"] * scale, det["boxes"], rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(raw["scores"], det["scores"])


def test_new_class_count_needs_reset_classifier(tmp_path):
    from mobilevit.weights.serialization import save_weights

    src = create_model("ssdlite_mobilevit_xxs", num_classes=81)
    path = tmp_path / "coco.safetensors"
    save_weights(src.state_dict(), path, {"format": "mobilevit", "task": "detection"})
    with pytest.raises(CheckpointMismatchError, match="only the classifier differs"):
        create_model("ssdlite_mobilevit_xxs", num_classes=5, pretrained=path)
    model = create_model("ssdlite_mobilevit_xxs", num_classes=5, pretrained=path, reset_classifier=True)
    torch.testing.assert_close(model.head.levels[0].proj.conv.weight, src.head.levels[0].proj.conv.weight)
    assert model.head.levels[0].predict.pw.weight.shape[0] == 6 * (4 + 5)


def test_bad_settings_are_clear_errors():
    with pytest.raises(ValueError, match="counts the background"):
        create_model("ssdlite_mobilevit_xxs", num_classes=1)
    with pytest.raises(ValueError, match="unknown SSDLite setting"):
        create_model("ssdlite_mobilevit_xxs", ssd={"anchor_sizes": 3})
    with pytest.raises(ValueError, match="one entry per level"):
        create_model("ssdlite_mobilevit_xxs", ssd={"proj_channels": (512, 256)})


def test_onnx_export_of_the_detector_matches_eager(tmp_path):
    pytest.importorskip("onnxruntime")
    from mobilevit.export import ExportError, export_onnx
    from mobilevit.heads.ssdlite import SSDLiteForExport

    torch.manual_seed(0)
    model = create_model("ssdlite_mobilevit_xxs", num_classes=4, ssd={"image_size": (128, 128)}).eval()
    report = export_onnx(model, tmp_path / "ssd.onnx", (128, 128), dynamic_batch=True)
    assert report.outputs == ["scores", "boxes"]
    assert all(c.max_abs_diff <= 1e-4 for c in report.checks) and len(report.checks) == 2
    with pytest.raises(ExportError, match="built for 128x128"):
        export_onnx(model, tmp_path / "other.onnx", (160, 160))
    # the exported core agrees with the eager detector: same top box, same score
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        scores, boxes = SSDLiteForExport(model)(x)
        (det,) = model([x[0]])
    best = scores[0, :, 1:].max()
    torch.testing.assert_close(det["scores"].max(), best)
    a, k = divmod(int(scores[0, :, 1:].argmax()), 3)
    torch.testing.assert_close(det["boxes"][det["scores"].argmax()], (boxes[0, a] * 128).clamp(0, 128))
