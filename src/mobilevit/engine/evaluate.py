"""Evaluating a weights file on a validation split through its task's plug-in (no trainer built).

What the file records (task, architecture, classes) fills the config first; the recipe and
``key=value`` overrides, which say where the data is, go on top. How the weights are meant to be
evaluated (a classifier's crop, resize and interpolation, as training here recorded them) stays
above the recipe: only an explicit override changes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..data import MultiScaleBatchSampler
from ..data.transforms import supported_interpolation
from ..loading import load_model
from ..weights import WeightsMeta
from . import dist as D
from .recipe import load_config
from .tasks import TASKS, RunContext
from .trainer import build_loader, use_channels_last


def config_from_meta(meta: WeightsMeta) -> dict[str, Any]:
    """The config settings a weights file implies (task, model, and the data sizes it trained at)."""
    base: dict[str, Any] = {
        "task": meta.task,
        "model": {"name": meta.arch, "num_classes": meta.num_classes, "overrides": meta.model_overrides},
    }
    x = meta.extra
    if meta.task == "classification" and "img_size" in x:
        base["data"] = {k: x[k] for k in ("img_size", "eval_resize", "interpolation") if k in x}
    elif meta.task == "segmentation" and "eval_size" in x:
        base["data"] = {"eval_size": x["eval_size"]}
    elif meta.task == "detection" and "ssd" in x:
        ssd = dict(x["ssd"])
        size = ssd.pop("image_size", None)
        base["model"]["ssd"] = ssd
        if size:
            base["data"] = {"image_size": int(size[0])}
    return base


def evaluate_weights(
    weights: str | Path,
    config: str | Path | None = None,
    overrides: list[str] | None = None,
    model_name: str | None = None,
) -> dict[str, Any]:
    """The validation metrics of ``weights`` (top-1 / top-5, mIoU, or COCO mAP by its task).

    Args:
        weights: a weights file (ours, or a foreign checkpoint with ``model_name``).
        config: a recipe (file or built-in name), or None: what the file records.
        overrides: ``key=value`` settings on top (where the data is, e.g. ``data.root=...``).
        model_name: the architecture, for files that do not record it.

    Returns:
        The task's metrics, with ``weights``, ``task``, ``arch``, ``split`` and ``images``.
    """
    model, meta = load_model(weights, model_name)
    base = config_from_meta(meta)
    pinned: list[str] = []
    if meta.task == "classification":
        cfg_ = model.pretrained_cfg  # type: ignore[union-attr]
        # how the weights are meant to be evaluated (recorded by training here, else the
        # checkpoint's own preprocessing): above the recipe, below the user's overrides
        pre = base.get("data") or {
            "img_size": cfg_.get("crop_size", 256),
            "eval_resize": cfg_.get("resize_size", 0),
            "interpolation": cfg_.get("interpolation", "bilinear"),
        }
        interpolation = supported_interpolation(pre.pop("interpolation", None))
        if interpolation:  # (else the recipe's, or the config's default)
            pre["interpolation"] = interpolation
        base["data"] = pre
        pinned = [f"data.{k}={v}" for k, v in pre.items()] if config is not None else []
    cfg = load_config(config, [*pinned, *(overrides or [])], base=base)
    info = D.init_distributed(cfg.run.device)
    try:
        if cfg.run.threads:
            torch.set_num_threads(cfg.run.threads)
        fmt = (
            torch.channels_last
            if use_channels_last(cfg.run.channels_last, info.device)
            else torch.contiguous_format
        )
        ctx = RunContext(info, fmt, cfg.run.bf16)
        out = Path(cfg.run.out_dir)
        task = TASKS[cfg.task](cfg, ctx, out)
        D.main_first(info, task.prepare_data)
        _, val_ds = task.build_datasets(train=False, classes=meta.classes)  # the recorded ones, if any
        b = task.batching()
        sampler = MultiScaleBatchSampler(
            len(val_ds), b.base_size, b.val_batch_size, None, False, False,
            rank=info.rank, world_size=info.world_size, pad=False,
        )  # fmt: skip
        loader = build_loader(val_ds, sampler, task, cfg.data.num_workers, cfg.run.seed)
        model = model.to(info.device).to(memory_format=fmt)
        result = task.evaluate(model, loader)
    finally:
        D.cleanup(info)
    result.update(
        weights=str(weights), task=meta.task, arch=meta.arch, split=task.split_name(), images=len(val_ds)
    )
    if meta.task == "classification":
        d = cfg.data
        result["preprocessing"] = (
            f"resize {d.eval_resize or d.img_size + 32} + centre crop {d.img_size} ({d.interpolation})"
        )
    if "iou" in result and isinstance(result["iou"], list):
        result["iou"] = dict(zip(task.classes, result["iou"], strict=True))
    return result
