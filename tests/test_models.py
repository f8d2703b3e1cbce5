import pytest
import torch

import mobilevit
from mobilevit import create_model, list_models
from mobilevit.bench import count_flops, count_params
from mobilevit.models.blocks import fold_patches, set_patch_layout, unfold_patches

EXPECTED_PARAMS = {"mobilevit_xxs": 1_272_024, "mobilevit_xs": 2_317_848, "mobilevit_s": 5_578_632}
EXPECTED_GMACS = {"mobilevit_xxs": 0.41, "mobilevit_xs": 1.03, "mobilevit_s": 2.00}


@pytest.mark.parametrize("name", list(EXPECTED_PARAMS))
def test_exact_parameter_counts_and_gmacs(name):
    model = create_model(name)
    assert count_params(model) == EXPECTED_PARAMS[name]
    assert len(model.state_dict()) == 311  # same entry count as ml-cvnets and timm
    gmacs = count_flops(model, (256, 256)) / 2e9
    assert gmacs == pytest.approx(EXPECTED_GMACS[name], abs=0.006)


def test_list_models_and_unknown_name():
    assert {"mobilevit_xxs", "mobilevit_xs", "mobilevit_s"} <= set(list_models())
    assert list_models("mobilevit_x*") == ["mobilevit_xs", "mobilevit_xxs"]
    with pytest.raises(ValueError, match="unknown model 'mobilevit_m'.*mobilevit_s.*mobilevit_xxs"):
        create_model("mobilevit_m")


@pytest.mark.parametrize("size", [(256, 256), (224, 224), (250, 190), (97, 131), (32, 32)])
def test_any_input_size_and_batch(size):
    model = create_model("mobilevit_xxs", num_classes=7).eval()
    with torch.no_grad():
        for b in (1, 3):
            assert model(torch.rand(b, 3, *size)).shape == (b, 7)


def test_train_mode_backward_batch_two():
    model = create_model("mobilevit_xxs", num_classes=5).train()
    out = model(torch.rand(2, 3, 96, 80))
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize(
    "bad, msg",
    [
        (torch.rand(1, 1, 64, 64), r"\[B, 3, H, W\].*got \[1, 1, 64, 64\]"),
        (torch.rand(1, 3, 2, 64, 64), r"\[B, 3, H, W\].*got \[1, 3, 2, 64, 64\]"),
        (torch.rand(3, 64, 64), r"\[B, 3, H, W\].*got \[3, 64, 64\]"),
    ],
)
def test_bad_input_shapes_are_named(bad, msg):
    model = create_model("mobilevit_xxs").eval()
    with pytest.raises(ValueError, match=msg):
        model(bad)


def test_features_and_feature_info():
    model = create_model("mobilevit_s").eval()
    info = model.feature_info
    assert [f.reduction for f in info] == [2, 4, 8, 16, 32]
    assert [f.channels for f in info] == [32, 64, 96, 128, 160]
    x = torch.rand(2, 3, 256, 192)
    with torch.no_grad():
        feats = model.forward_stages(x, [2, 3, 4])
        assert [tuple(f.shape[1:]) for f in feats] == [(96, 32, 24), (128, 16, 12), (160, 8, 6)]
        assert model.forward_features(x).shape == (2, 640, 8, 6)
        pooled = model.forward_head(model.forward_features(x), pre_logits=True)
        assert pooled.shape == (2, 640)
    with pytest.raises(IndexError):
        model.forward_stages(x, [5])


@pytest.mark.parametrize("os_, reductions", [(16, [2, 4, 8, 16, 16]), (8, [2, 4, 8, 8, 8])])
def test_output_stride_by_dilation(os_, reductions):
    model = create_model("mobilevit_xxs", output_stride=os_, features_only=True).eval()
    assert [f.reduction for f in model.feature_info] == reductions
    assert count_params(model) == count_params(create_model("mobilevit_xxs", features_only=True))
    with torch.no_grad():
        out = model.forward_stages(torch.rand(1, 3, 128, 160))
    assert [o.shape[-2] for o in out] == [128 // r for r in reductions]
    # ml-cvnets' rule: the strided MV2 gets the *previous* dilation, the block none
    l5_dw = model.stages[4][0].dw.conv
    assert l5_dw.stride == (1, 1) and l5_dw.dilation == ((1, 1) if os_ == 16 else (2, 2))
    assert not hasattr(model, "head")  # no classifier; the stride-32 level is the 1x1 expansion (timm)
    assert (
        model.feature_info.channels() == [16, 24, 48, 64, 320]
        and model.feature_info.module_name(4) == "conv_exp"
    )


def test_ablation_knobs_are_config_fields():
    base = create_model("mobilevit_xxs")
    patches = create_model("mobilevit_xxs", patch_size=(8, 4, 2))
    assert [patches.stages[i][1].patch_size for i in (2, 3, 4)] == [(8, 8), (4, 4), (2, 2)]
    assert count_params(patches) == count_params(base)  # patch size changes no weights
    no_skip = create_model("mobilevit_xxs", skip_connection=False)
    assert no_skip.stages[2][1].conv_fusion.conv.in_channels == 48  # C instead of 2C
    assert count_params(no_skip) < count_params(base)
    k5 = create_model("mobilevit_xxs", conv_kernel_size=5)
    assert k5.stages[2][1].conv_local.conv.kernel_size == (5, 5)
    wide = create_model(
        "mobilevit_xxs", transformer_dim=(32, 64, 96), transformer_depth=1, num_heads=2, ffn_ratio=4
    )
    blk = wide.stages[2][1]
    assert len(blk.transformer) == 1 and blk.transformer[0].attn.num_heads == 2
    assert blk.transformer[0].mlp.fc1.out_features == 128
    for m in (patches, no_skip, k5, wide):
        with torch.no_grad():
            assert m.eval()(torch.rand(1, 3, 100, 120)).shape == (1, 1000)


def test_bad_config_values_are_rejected():
    with pytest.raises(
        TypeError, match="unknown MobileViT config option.*'patchsize'.*accepted:.*patch_size"
    ):
        create_model("mobilevit_xxs", patchsize=4)
    with pytest.raises(ValueError, match="one value per MobileViT stage"):
        create_model("mobilevit_xxs", patch_size=(8, 4, 2, 1))
    with pytest.raises(ValueError, match="divisible by num_heads"):
        create_model("mobilevit_xxs", num_heads=3)
    with pytest.raises(ValueError, match="output_stride"):
        create_model("mobilevit_xxs", output_stride=4)
    with pytest.raises(ValueError, match="classifier_dropout"):
        create_model("mobilevit_xxs", classifier_dropout=1.5)


@pytest.mark.parametrize("ph, pw", [(2, 2), (4, 4), (2, 4), (3, 1)])
def test_unfold_fold_round_trip_and_token_layout(ph, pw):
    b, c, nh, nw = 2, 5, 3, 4
    x = torch.randn(b, c, nh * ph, nw * pw)
    tokens = unfold_patches(x, ph, pw, layout="nchw")
    assert tokens.shape == (b * ph * pw, nh * nw, c)
    # token [b*P + (i*pw + j), n_h*nw + n_w] holds pixel (n_h*ph + i, n_w*pw + j)
    i, j, n_h, n_w = ph - 1, pw - 1, nh - 1, 1
    assert torch.equal(tokens[1 * ph * pw + i * pw + j, n_h * nw + n_w], x[1, :, n_h * ph + i, n_w * pw + j])
    assert torch.equal(fold_patches(tokens, b, ph, pw, nh, nw, layout="nchw"), x)
    # the default NHWC way gives the same tokens from either memory format, and folds back
    assert torch.equal(unfold_patches(x, ph, pw), tokens)
    assert torch.equal(unfold_patches(x.contiguous(memory_format=torch.channels_last), ph, pw), tokens)
    folded = fold_patches(tokens, b, ph, pw, nh, nw)
    assert torch.equal(folded, x) and folded.is_contiguous(memory_format=torch.channels_last)


def test_patch_layout_is_set_per_model_and_checked():
    model = create_model("mobilevit_xxs").eval()
    x = torch.rand(1, 3, 96, 128)
    with torch.no_grad():
        ref = model(x)
        for layout in ("nchw", "pixels", "nhwc"):
            assert set_patch_layout(model, layout) == 3  # one MobileViT block per stage 3-5
            assert torch.allclose(model(x), ref, atol=1e-5)
    with pytest.raises(ValueError, match="patch layout must be one of pixels, nhwc, nchw, not 'NHWC'"):
        set_patch_layout(model, "NHWC")


def test_patch_layouts_give_the_same_gradients():
    # every layout is a valid training layout, not only an export one: same loss, same gradients
    # (dropout off: its masks follow token order, which the layouts do not share)
    model = create_model(
        "mobilevit_xxs", num_classes=5, patch_size=(2, 4, 2), transformer_dropout=0.0, classifier_dropout=0.0
    ).train()
    x, y = torch.rand(2, 3, 64, 96), torch.tensor([1, 3])
    grads = {}
    for layout in ("nhwc", "pixels", "nchw"):
        set_patch_layout(model, layout)
        model.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        grads[layout] = (loss.detach(), [p.grad.clone() for p in model.parameters()])
    for layout in ("pixels", "nchw"):
        assert torch.allclose(grads[layout][0], grads["nhwc"][0], atol=1e-5)
        for g, ref in zip(grads[layout][1], grads["nhwc"][1], strict=True):
            assert torch.allclose(g, ref, atol=1e-5, rtol=1e-4)


def test_reset_classifier_and_num_classes_zero():
    model = create_model("mobilevit_xxs")
    model.reset_classifier(10)
    assert model.head.fc.out_features == 10
    pooled = create_model("mobilevit_xxs", num_classes=0).eval()
    with torch.no_grad():
        assert pooled(torch.rand(2, 3, 64, 64)).shape == (2, 320)


def test_package_exports():
    assert mobilevit.MobileViTConfig is not None and callable(mobilevit.create_model)
