"""Our models vs timm's and transformers' MobileViT, with random (non-trivial) weights.

Logits must agree to 1e-4 for every variant, batch >= 2, at 256x256 and at a size that is not
a multiple of 32 (and not square); per-stage features must agree too.
"""

import pytest
import torch
from _utils import HF_CONFIGS, VARIANTS, max_diff, randomize

from mobilevit import create_model
from mobilevit.weights import load_state_dict_checked
from mobilevit.weights.convert import convert_state_dict

timm = pytest.importorskip("timm")
transformers = pytest.importorskip("transformers")

SIZES = [(256, 256), (250, 190)]


def _timm_stage_outputs(model, x):
    outs = []
    hooks = [s.register_forward_hook(lambda m, i, o: outs.append(o)) for s in model.stages]
    try:
        logits = model(x)
    finally:
        for h in hooks:
            h.remove()
    return logits, outs


@pytest.mark.parametrize("name", VARIANTS)
def test_timm_equivalence(name):
    ref = randomize(timm.create_model(name, pretrained=False)).eval()
    sd, order = convert_state_dict(ref.state_dict(), "timm")
    assert order == "RGB"
    ours = create_model(name).eval()
    load_state_dict_checked(ours, sd)
    for size in SIZES:
        x = torch.rand(2, 3, *size)
        with torch.no_grad():
            logits_ref, stages_ref = _timm_stage_outputs(ref, x)
            logits = ours(x)
            stages = ours.forward_stages(x)
        assert max_diff(logits, logits_ref) <= 1e-4
        for a, b in zip(stages, stages_ref, strict=True):
            assert max_diff(a, b) <= 1e-4
        assert logits.std() > 0.05  # non-trivial outputs


def _hf_model(name, num_labels=1000):
    from transformers import MobileViTConfig, MobileViTForImageClassification

    cfg = MobileViTConfig(num_labels=num_labels, **HF_CONFIGS[name])
    return randomize(MobileViTForImageClassification(cfg)).eval()


@pytest.mark.parametrize("name", VARIANTS)
def test_transformers_equivalence(name):
    ref = _hf_model(name)
    # keep BGR: identical tensors in, identical logits out
    sd, order = convert_state_dict(ref.state_dict(), "transformers", to_rgb=False)
    assert order == "BGR"
    ours = create_model(name).eval()
    load_state_dict_checked(ours, sd)
    # default conversion: the stem is flipped so our model takes RGB
    sd_rgb, order = convert_state_dict(ref.state_dict(), "transformers")
    assert order == "RGB"
    ours_rgb = create_model(name).eval()
    load_state_dict_checked(ours_rgb, sd_rgb)
    for size in SIZES:
        x = torch.rand(2, 3, *size)
        with torch.no_grad():
            out = ref(pixel_values=x, output_hidden_states=True)
            logits = ours(x)
            stages = ours.forward_stages(x)
            logits_rgb = ours_rgb(x.flip(1))  # x is "BGR" for the reference
        assert max_diff(logits, out.logits) <= 1e-4
        assert max_diff(logits_rgb, out.logits) <= 1e-4
        assert len(out.hidden_states) == 5
        for a, b in zip(stages, out.hidden_states, strict=True):
            assert max_diff(a, b) <= 1e-4
