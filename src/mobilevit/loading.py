"""One way to turn a weights file into a ready model: ``load_model(path) -> (model, meta)``.

Evaluation, prediction and export all call it. The file is read once. Our files say what they
hold (:class:`~mobilevit.serialization.WeightsMeta`: architecture, task, classes, overrides,
how training evaluated); a foreign checkpoint (timm, transformers, ml-cvnets) is converted on
the way in and its architecture inferred from its shapes unless ``model_name`` names it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from .registry import create_model
from .serialization import CheckpointError, WeightsMeta, read_state_dict
from .weights import apply_checkpoint


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
    """A :class:`WeightsMeta` for a checkpoint that carries none (timm, transformers, ml-cvnets)."""
    from .convert import (
        ConversionError,
        convert_with_task,
        detect_source,
        infer_model_name,
        num_classes_of,
    )

    try:
        source = detect_source(state_dict)
        converted, task, order = (
            convert_with_task(state_dict, source) if source != "mobilevit" else (state_dict, None, "RGB")
        )
        if task is None:
            from .convert import task_of

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


def load_model(path: str | Path, model_name: str | None = None) -> tuple[nn.Module, WeightsMeta]:
    """The eval-mode model stored in ``path`` and what the file says about it.

    ``meta.classes`` is always filled (the recorded names, else ImageNet's / VOC's / indices), and
    ``model.pretrained_cfg`` carries the input convention (crop and resize for classifiers that
    trained here, ``eval_size`` for segmenters). ``model_name`` overrides the recorded
    architecture (needed only for foreign files whose shapes fit several models).
    """
    path = Path(path)
    sd, raw = read_state_dict(path)
    meta = WeightsMeta.from_metadata(raw, where=str(path)) or describe_foreign(sd, model_name, path)
    if model_name:
        meta.arch = model_name
    if meta.num_classes is None:
        from .convert import num_classes_of

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
        cfg.update(crop_size=crop, resize_size=int(meta.extra.get("eval_resize", crop + 32)))
    if meta.task == "segmentation":
        cfg.update(eval_size=int(meta.extra.get("eval_size", 512)))
    if meta.classes is None:
        meta.classes = default_classes(meta.task, meta.num_classes)
    return model.eval(), meta
