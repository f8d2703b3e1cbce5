"""The model contract, swept over every registered model (as timm's tests sweep list_models()):
it builds, runs forward and backward at two input sizes, has its parameter count in the one table
(the registrations), and round-trips through its own weights file with equal outputs."""

import pytest
import torch

from mobilevit import create_model, list_models, load_model
from mobilevit.bench import count_params
from mobilevit.models import expected_params
from mobilevit.weights import WeightsMeta, write_weights

TASK = {"deeplabv3": "segmentation", "ssdlite": "detection"}


def task_of(name: str) -> str:
    return TASK.get(name.split("_")[0], "classification")


def small(name: str) -> torch.nn.Module:
    kwargs = {"ssd": {"image_size": (96, 96)}} if task_of(name) == "detection" else {}
    return create_model(name, num_classes=5, **kwargs)


def outputs(model: torch.nn.Module, x: torch.Tensor, name: str) -> torch.Tensor:
    if task_of(name) == "detection":
        cls, box = model.forward_raw(model.transform.normalize(x))  # the head's raw outputs
        return torch.cat([cls.flatten(1), box.flatten(1)], 1)
    return model(x)


def test_every_registered_model_is_swept():
    assert len(list_models()) >= 9 and {task_of(n) for n in list_models()} == {
        "classification",
        "segmentation",
        "detection",
    }


@pytest.mark.parametrize("name", list_models())
def test_parameter_count_is_in_the_table(name):
    assert expected_params(name) is not None, f"{name} registered without its parameter count"
    assert count_params(create_model(name)) == expected_params(name)


@pytest.mark.parametrize("name", list_models())
def test_forward_and_backward_at_two_sizes(name):
    torch.manual_seed(0)
    model = small(name).train()
    for size in ((96, 96), (128, 112)):
        x = torch.rand(2, 3, *size)
        if task_of(name) == "detection":
            targets = [{"boxes": torch.tensor([[8.0, 8.0, 60.0, 50.0]]), "labels": torch.tensor([1])}] * 2
            losses = model(list(x), targets)
            loss = losses["bbox_regression"] + losses["classification"]
        else:
            out = model(x)
            assert out.shape[:2] == (2, 5) and (task_of(name) == "classification" or out.shape[2:] == size)
            loss = out.float().square().mean()
        model.zero_grad(set_to_none=True)
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), name


@pytest.mark.parametrize("name", list_models())
def test_round_trip_through_its_own_weights_file(name, tmp_path):
    torch.manual_seed(1)
    model = small(name).eval()
    extra = {"ssd": {"image_size": [96, 96]}} if task_of(name) == "detection" else {}
    meta = WeightsMeta(name, task=task_of(name), num_classes=5, classes=list("abcde"), extra=extra)
    path = write_weights(model.state_dict(), tmp_path / "w.safetensors", meta)
    loaded, got = load_model(path)
    assert got.arch == name and got.task == task_of(name) and got.classes == list("abcde")
    x = torch.rand(1, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(outputs(model, x, name), outputs(loaded, x, name))
