"""Weights files to models and back: ``load_model(path) -> (model, meta)``, ``convert_file`` and
``infer_model_name`` (the model-aware side of weights: each builds models to check a file).

Evaluation, prediction and export all call ``load_model``. The file is read once. Our files say
what they hold (`WeightsMeta`: architecture, task, classes, overrides,
how training evaluated); a foreign checkpoint (timm, transformers, ml-cvnets) is converted on
the way in and its architecture inferred from its shapes unless ``model_name`` names it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from .models import create_model
from .models.mobilevit import CONFIGS
from .models.mobilevitv2 import CONFIGS_V2
from .models.mobilevitv3 import CONFIGS_V3, CONFIGS_V3_V2, V3_LICENSE
from .weights.convert import (
    ConversionError,
    convert_with_task,
    detect_source,
    num_classes_of,
    task_of,
)
from .weights.hub import fetch_repo, is_hub_name
from .weights.loading import apply_checkpoint, load_state_dict_checked
from .weights.serialization import CheckpointError, WeightsMeta, read_state_dict, write_weights


def imagenet_classes() -> list[str]:
    """The 1,000 ImageNet-1k class names that ship with torchvision (no download)."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def default_classes(task: str, num_classes: int) -> list[str]:
    """Class names for a file that records none: ImageNet's, VOC's, or the indices."""
    if task == "classification" and num_classes == 1000:
        return imagenet_classes()
    if task == "segmentation" and num_classes == 21:
        from .data.voc import VOC_CLASSES

        return list(VOC_CLASSES)
    if task == "detection":
        return ["background", *(str(i) for i in range(1, num_classes))]
    return [str(i) for i in range(num_classes)]


def describe_foreign(state_dict: dict, model_name: str | None, path: Path) -> WeightsMeta:
    """A `WeightsMeta` for a checkpoint that carries none (timm, transformers, ml-cvnets)."""
    try:
        source = detect_source(state_dict)
        converted, task, order = (
            convert_with_task(state_dict, source) if source != "mobilevit" else (state_dict, None, "RGB")
        )
        if task is None:
            task = task_of(converted)
        name = model_name or infer_model_name(converted)
    except ConversionError as e:
        raise CheckpointError(f"{path}: {e}") from e
    return WeightsMeta(
        arch=name,
        task=task,
        num_classes=num_classes_of(converted),
        channel_order=order,
        extra={"converted_from": source} if source != "mobilevit" else {},
    )


def _local(path: str | Path, model_name: str | None) -> tuple[Path, str | None]:
    """A local weights path for ``path`` (an ``hf-hub:`` name is fetched), and the architecture
    its repo names when ``model_name`` gives none."""
    if is_hub_name(path):
        repo = fetch_repo(str(path))
        return repo.weights, model_name or repo.arch
    return Path(path), model_name


def load_model(path: str | Path, model_name: str | None = None) -> tuple[nn.Module, WeightsMeta]:
    """The eval-mode model stored in ``path`` and what the file says about it.

    ``meta.classes`` holds the recorded class names (None when the file records none:
    `class_names` gives the defaults), and
    ``model.pretrained_cfg`` carries the input convention (crop and resize for classifiers that
    trained here, ``eval_size`` for segmenters). ``model_name`` overrides the recorded
    architecture (needed only for foreign files whose shapes fit several models). ``path`` may
    be an ``hf-hub:ORG/REPO`` name (`mobilevit.weights.hub`).
    """
    path, model_name = _local(path, model_name)
    sd, raw = read_state_dict(path)
    meta = WeightsMeta.from_metadata(raw, where=str(path)) or describe_foreign(sd, model_name, path)
    if model_name:
        meta.arch = model_name
    if meta.num_classes is None:
        meta.num_classes = num_classes_of(sd)
    kwargs: dict[str, Any] = dict(meta.model_overrides)
    if meta.task == "detection" and "ssd" in meta.extra:
        ssd = dict(meta.extra["ssd"])
        if "image_size" in ssd:
            ssd["image_size"] = tuple(ssd["image_size"])
        kwargs["ssd"] = ssd
    try:
        model = create_model(meta.arch, num_classes=meta.num_classes, **kwargs)
    except TypeError as e:
        raise CheckpointError(f"{path}: recorded model settings do not build {meta.arch} ({e})") from e
    apply_checkpoint(model, sd, raw, path)
    cfg = model.pretrained_cfg  # type: ignore[attr-defined]
    if "img_size" in meta.extra:  # trained here: evaluate the way training did
        crop = int(meta.extra["img_size"])
        cfg.update(
            crop_size=crop,
            resize_size=int(meta.extra.get("eval_resize", crop + 32)),
            interpolation=str(meta.extra.get("interpolation", "bilinear")),
        )
    if meta.task == "segmentation":
        cfg.update(eval_size=int(meta.extra.get("eval_size", 512)))
    return model.eval(), meta


def class_names(meta: WeightsMeta) -> list[str]:
    """The recorded class names, else ImageNet's / VOC's / the indices (`default_classes`)."""
    if meta.classes is not None:
        return list(meta.classes)
    return default_classes(meta.task, int(meta.num_classes or 0))


def infer_model_name(state_dict: dict[str, torch.Tensor]) -> str:
    """The registered model whose parameter shapes match ``state_dict`` (ours layout)."""
    task = task_of(state_dict)
    v2 = any(k.endswith("attn.qkv_proj.weight") for k in state_dict)  # separable attention
    # v3 keeps its frame's key names; the shapes tell it apart (its fusion / projection widths)
    family = [*CONFIGS_V2, *CONFIGS_V3_V2] if v2 else [*CONFIGS, *CONFIGS_V3]
    if task == "segmentation":
        names = [f"deeplabv3_{n}" for n in family]
        num_classes = state_dict["classifier.weight"].shape[0]
    elif task == "detection":
        names = [f"ssdlite_{n}" for n in family]
        num_classes = num_classes_of(state_dict)
    else:
        names = list(family)
        num_classes = state_dict["head.fc.weight"].shape[0] if "head.fc.weight" in state_dict else 1000
    for name in names:
        ref = create_model(name, num_classes=num_classes).state_dict()
        if ref.keys() == state_dict.keys() and all(ref[k].shape == state_dict[k].shape for k in ref):
            return name
    raise ConversionError(
        f"the checkpoint's shapes match none of the standard models ({', '.join(names)}); "
        "pass the model name explicitly"
    )


def convert_file(
    src: str | Path,
    out: str | Path,
    source: str | None = None,
    model_name: str | None = None,
    to_rgb: bool = True,
    trained_on: str | None = None,
) -> WeightsMeta:
    """Convert a checkpoint file or folder to our safetensors format and verify it loads.

    ``trained_on`` overrides the channel order the source is believed to have been trained on.
    Returns the metadata written next to the weights. ``src`` may be an ``hf-hub:ORG/REPO`` name.
    """
    src, model_name = _local(src, model_name)
    sd, _ = read_state_dict(src)
    detected = detect_source(sd)
    if source is None:
        source = detected
    elif detected != source:
        raise ConversionError(f"{src}: --from {source} given, but the keys look like a {detected} checkpoint")
    if source == "mobilevit":
        raise ConversionError(f"{src} is already in this package's format")
    converted, task, order = convert_with_task(sd, source, to_rgb=to_rgb, trained_on=trained_on)
    name = model_name or infer_model_name(converted)
    num_classes = num_classes_of(converted)
    model = create_model(name, num_classes=num_classes)
    load_state_dict_checked(model, converted, source=str(src))  # proves it loads, strictly
    extra = {"converted_from": source, "source_file": Path(src).name}
    if "mobilevitv3_" in name:  # the released v3 weights are not under an open licence
        extra["license"] = V3_LICENSE
    meta = WeightsMeta(arch=name, task=task, num_classes=num_classes, channel_order=order, extra=extra)
    write_weights(converted, out, meta)
    return meta
