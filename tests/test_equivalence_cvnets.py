"""Apple ml-cvnets v0.1: the official code's own answers (shared/fixtures/cvnets)."""

import json

import pytest
import torch
from _utils import FIXTURES, VARIANTS, max_diff

from mobilevit import create_model
from mobilevit.weights import load_state_dict_checked
from mobilevit.weights.convert import convert_state_dict, detect_source
from mobilevit.weights.convert.cvnets import BACKBONE_RULES
from mobilevit.weights.serialization import read_state_dict

pytestmark = pytest.mark.skipif(
    not FIXTURES.is_dir(), reason=f"ml-cvnets fixtures not found at {FIXTURES} (set MOBILEVIT_FIXTURES)"
)


@pytest.fixture(scope="module")
def xxs():
    sd, _ = read_state_dict(FIXTURES / "mobilevit_xxs.pt")
    io = torch.load(FIXTURES / "mobilevit_xxs.io.pt", map_location="cpu", weights_only=True)
    return sd, io


def test_fixture_input_is_the_documented_one(xxs):
    _, io = xxs
    g = torch.manual_seed(123)
    assert g is not None
    assert torch.equal(io["input"], torch.rand(io["input_shape"]))


def test_cvnets_classifier_reproduces_official_outputs(xxs):
    sd, io = xxs
    assert detect_source(sd) == "cvnets"
    converted, order = convert_state_dict(sd, "cvnets", to_rgb=False)
    assert order == "BGR"
    model = create_model("mobilevit_xxs").eval()
    load_state_dict_checked(model, converted)
    x = io["input"]
    with torch.no_grad():
        logits = model(x)
        features = model.forward_features(x)
        stages = model.forward_stages(x)
    assert max_diff(logits, io["output"]) <= 1e-5
    assert max_diff(features, io["features"]) <= 1e-4
    means = io["stage_channel_means"]
    for i, s in enumerate(stages):
        assert max_diff(s.mean(dim=(2, 3)), means[f"out_l{i + 1}"]) <= 1e-5, f"stage L{i + 1}"
    assert max_diff(features.mean(dim=(2, 3)), means["out_l5_exp"]) <= 1e-5


def test_cvnets_rgb_conversion_is_exact_on_flipped_input(xxs):
    sd, io = xxs
    converted, order = convert_state_dict(sd, "cvnets")  # default: take RGB
    assert order == "RGB"
    model = create_model("mobilevit_xxs").eval()
    load_state_dict_checked(model, converted)
    with torch.no_grad():
        features = model.forward_features(io["input"].flip(1))  # the BGR fixture input as RGB
    assert max_diff(features, io["features"]) <= 1e-4


@pytest.mark.parametrize("name", VARIANTS)
def test_cvnets_manifests_map_onto_our_keys(name):
    """Every key of the XS / S (and XXS) manifests maps to a key of ours with the same shape."""
    manifest = json.loads((FIXTURES / f"{name}.keys.json").read_text())
    ours = create_model(name).state_dict()
    mapped = {BACKBONE_RULES.rename(k): tuple(s) for k, s in manifest["state_dict"]}
    assert None not in mapped
    assert {k: tuple(v.shape) for k, v in ours.items()} == mapped
    assert (
        sum(v.numel() for k, v in ours.items() if "running" not in k and "num_batches" not in k)
        == manifest["num_parameters"]
    )
