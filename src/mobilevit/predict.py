"""Loading a trained or converted classifier for evaluation and prediction."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from .data import EvalTransform
from .data.images import IMAGE_READ_ERRORS, read_rgb
from .data.transforms import supported_interpolation
from .loading import class_names, imagenet_classes, load_model

__all__ = [
    "imagenet_classes",
    "load_classifier",
    "load_detector",
    "load_segmenter",
    "predict_boxes",
    "predict_images",
    "predict_masks",
]


def _load_task(weights: str | Path, task: str, model_name: str | None = None) -> tuple[nn.Module, list[str]]:
    model, meta = load_model(weights, model_name)
    if meta.task != task:
        raise ValueError(f"{weights} holds a {meta.task} model ({meta.arch}), not a {task} model")
    return model, class_names(meta)


def load_classifier(weights: str | Path, model_name: str | None = None) -> tuple[nn.Module, list[str]]:
    """A classifier and its class names from a weights file (``load_model`` for one task)."""
    return _load_task(weights, "classification", model_name)


@torch.no_grad()
def predict_images(
    model: nn.Module, classes: list[str], paths: list[str | Path], img_size: int | None = None, topk: int = 5
) -> list[dict[str, Any]]:
    """Top-k (probability, class) for each image; unreadable files give an ``error`` entry.

    Preprocessing follows the weights' recorded convention (crop, resize, channel order) unless
    ``img_size`` asks for another crop.
    """
    cfg = getattr(model, "pretrained_cfg", None) or {}
    flip = cfg.get("channel_order") == "BGR"
    crop = img_size or cfg.get("crop_size") or 256
    resize = cfg.get("resize_size") if crop == cfg.get("crop_size") else None
    tf = EvalTransform(crop, resize, supported_interpolation(cfg.get("interpolation")) or "bilinear")
    out = []
    for p in paths:
        try:
            x = tf(read_rgb(p))[None]
        except IMAGE_READ_ERRORS as e:
            out.append({"image": str(p), "error": f"{type(e).__name__}: {e}"})
            continue
        if flip:
            x = x.flip(1)
        probs = model(x).softmax(dim=1)[0]
        k = min(topk, probs.numel())
        top = probs.topk(k)
        out.append(
            {
                "image": str(p),
                "top": [
                    {"class": classes[i], "index": int(i), "prob": float(v)}
                    for v, i in zip(top.values, top.indices, strict=True)
                ],
            }
        )
    return out


def load_segmenter(weights: str | Path) -> tuple[nn.Module, list[str]]:
    """A DeepLabv3 model and its class names from a segmentation weights file."""
    return _load_task(weights, "segmentation")


def colorize(mask: torch.Tensor) -> Image.Image:
    """A class-index mask as a VOC-palette image."""
    from .data.voc import voc_palette

    img = Image.fromarray(mask.to(torch.uint8).numpy(), mode="P")
    img.putpalette(voc_palette())
    return img


@torch.no_grad()
def predict_masks(
    model: nn.Module,
    classes: list[str],
    paths: list[str | Path],
    out_dir: Path,
    size: int | None = None,
    alpha: float = 0.5,
) -> list[dict[str, Any]]:
    """Predict a mask per image and write ``<out_dir>/<stem>_overlay.png`` (image blended with the
    coloured mask) and ``<stem>_mask.png`` (palette PNG of class indices)."""
    import torch.nn.functional as F
    from torchvision.transforms import v2 as T

    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = getattr(model, "pretrained_cfg", None) or {}
    flip = cfg.get("channel_order") == "BGR"
    size = size or int(cfg.get("eval_size", 512))
    results = []
    for p in paths:
        try:
            image = read_rgb(p)
        except IMAGE_READ_ERRORS as e:
            results.append({"image": str(p), "error": f"{type(e).__name__}: {e}"})
            continue
        x = T.functional.to_dtype(
            T.functional.resize(T.functional.pil_to_tensor(image), size, antialias=True),
            torch.float32,
            scale=True,
        )[None]
        if flip:
            x = x.flip(1)
        logits = model.forward_lowres(x)
        corners = getattr(model, "align_corners", False)  # as the head upsamples
        logits = F.interpolate(
            logits, size=(image.height, image.width), mode="bilinear", align_corners=corners
        )
        mask = logits.argmax(1)[0]
        colour = colorize(mask).convert("RGB")
        overlay = Image.blend(image, colour, alpha)
        stem = Path(p).stem
        overlay_path, mask_path = out_dir / f"{stem}_overlay.png", out_dir / f"{stem}_mask.png"
        overlay.save(overlay_path)
        colorize(mask).save(mask_path)
        counts = torch.bincount(mask.flatten(), minlength=len(classes))
        found = [f"{classes[i]} {100 * int(c) / mask.numel():.1f}%" for i, c in enumerate(counts) if c > 0]
        results.append(
            {
                "image": str(p),
                "overlay": str(overlay_path),
                "mask": str(mask_path),
                "summary": ", ".join(found),
            }
        )
    return results


def load_detector(weights: str | Path) -> tuple[nn.Module, list[str]]:
    """An SSDLite model and its class names (index 0: background) from a detection weights file."""
    return _load_task(weights, "detection")


@torch.no_grad()
def predict_boxes(
    model: nn.Module,
    classes: list[str],
    paths: list[str | Path],
    out_dir: Path,
    score_threshold: float = 0.3,
) -> list[dict[str, Any]]:
    """Detect objects in each image and write ``<out_dir>/<stem>_boxes.png``: the image with the
    boxes, class names and scores drawn (detections below ``score_threshold`` are left out)."""
    from torchvision.transforms import v2 as T
    from torchvision.utils import draw_bounding_boxes

    out_dir.mkdir(parents=True, exist_ok=True)
    flip = (getattr(model, "pretrained_cfg", None) or {}).get("channel_order") == "BGR"
    palette = [tuple(int(c) for c in colour) for colour in _box_palette(len(classes))]
    results = []
    for p in paths:
        try:
            pixels = T.functional.pil_to_tensor(read_rgb(p))  # uint8 [3, H, W]
        except IMAGE_READ_ERRORS as e:
            results.append({"image": str(p), "error": f"{type(e).__name__}: {e}"})
            continue
        x = T.functional.to_dtype(pixels, torch.float32, scale=True)
        (det,) = model([x.flip(0) if flip else x])
        keep = det["scores"] >= score_threshold
        boxes, scores, labels = det["boxes"][keep], det["scores"][keep], det["labels"][keep]
        names = [classes[int(i)] if int(i) < len(classes) else str(int(i)) for i in labels]
        drawn = draw_bounding_boxes(
            pixels,
            boxes,
            labels=[f"{n} {float(s):.2f}" for n, s in zip(names, scores, strict=True)],
            colors=[palette[int(i) % len(palette)] for i in labels],
            width=2,
        )
        path = out_dir / f"{Path(p).stem}_boxes.png"
        Image.fromarray(drawn.permute(1, 2, 0).numpy()).save(path)
        results.append(
            {
                "image": str(p),
                "boxes_png": str(path),
                "detections": [
                    {"class": n, "label": int(i), "score": float(s), "box": [round(float(v), 1) for v in b]}
                    for n, i, s, b in zip(names, labels, scores, boxes, strict=True)
                ],
            }
        )
    return results


def _box_palette(n: int) -> list[tuple[int, int, int]]:
    """Distinct, saturated colours per class (the VOC palette without its dark first entries)."""
    from .data.voc import voc_palette

    flat = voc_palette()
    return [tuple(flat[3 * i : 3 * i + 3]) for i in range(1, n + 1)] or [(255, 0, 0)]  # type: ignore[misc]
