"""timm-style feature maps: ``create_model(name, features_only=True, out_indices=...)`` returns a
list of maps with ``feature_info``, for v1, v2 and v3, equal to timm's with the same weights."""

from collections import OrderedDict

import pytest
import torch
from _utils import max_diff, randomize

from mobilevit import create_model

FAMILIES = ("mobilevit_s", "mobilevitv2_050", "mobilevitv3_xxs")


@pytest.mark.parametrize("name", FAMILIES)
def test_feature_maps_feed_an_fpn_with_the_channels_and_strides_feature_info_gives(name):
    from torchvision.ops import FeaturePyramidNetwork

    model = create_model(name, features_only=True).eval()
    info = model.feature_info
    assert info.reduction() == [2, 4, 8, 16, 32] and info.out_indices == (0, 1, 2, 3, 4)
    x = torch.rand(2, 3, 128, 192)  # sides that are multiples of 64: v2's L5 resizes odd maps up
    with torch.no_grad():
        maps = model(x)
    assert isinstance(maps, list) and len(maps) == 5
    for m, c, r in zip(maps, info.channels(), info.reduction(), strict=True):
        assert tuple(m.shape) == (2, c, 128 // r, 192 // r)
    fpn = FeaturePyramidNetwork(info.channels(), out_channels=32).eval()
    with torch.no_grad():
        pyramid = fpn(OrderedDict((str(i), m) for i, m in enumerate(maps)))
    assert [tuple(p.shape) for p in pyramid.values()] == [
        (2, 32, 128 // r, 192 // r) for r in info.reduction()
    ]


def test_v1_level_4_is_the_expansion_conv_and_out_indices_pick_levels():
    model = create_model("mobilevit_s", features_only=True, out_indices=(1, 2, -1)).eval()
    assert model.feature_info.channels() == [64, 96, 640] and model.feature_info.reduction() == [4, 8, 32]
    assert model.feature_info.module_name() == ["stages.1", "stages.2", "conv_exp"]
    assert model.feature_info[2]["num_chs"] == 640  # timm's dict keys work too
    with torch.no_grad():
        assert [m.shape[1] for m in model(torch.rand(1, 3, 64, 64))] == [64, 96, 640]
    dilated = create_model("mobilevit_xxs", features_only=True, output_stride=16)
    assert dilated.feature_info.reduction() == [2, 4, 8, 16, 16]
    with pytest.raises(ValueError, match=r"out_indices must pick levels among 0\.\.4, got \(5,\)"):
        create_model("mobilevit_xxs", features_only=True, out_indices=(5,))
    with pytest.raises(ValueError, match="pass features_only=True too"):
        create_model("mobilevit_xxs", out_indices=(1, 2))
    with pytest.raises(ValueError, match="takes a MobileViT classifier"):
        create_model("deeplabv3_mobilevit_xxs", features_only=True)


@pytest.mark.parametrize("name", ["mobilevit_xxs", "mobilevit_s", "mobilevitv2_050"])
def test_equal_to_timms_features_only_with_the_same_weights(tmp_path, name):
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    full = randomize(timm.create_model(name, pretrained=False)).eval()
    path = tmp_path / "timm.safetensors"
    save_file({k: v.contiguous() for k, v in full.state_dict().items()}, str(path))
    theirs = timm.create_model(
        name, features_only=True, pretrained=True, pretrained_cfg_overlay={"file": str(path)}
    ).eval()
    ours = create_model(name, features_only=True, pretrained=path).eval()
    assert ours.feature_info.channels() == theirs.feature_info.channels()
    assert ours.feature_info.reduction() == theirs.feature_info.reduction()
    x = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        for a, b in zip(ours(x), theirs(x), strict=True):
            assert max_diff(a, b) <= 1e-4
