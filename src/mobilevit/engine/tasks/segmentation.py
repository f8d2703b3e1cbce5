"""Semantic segmentation with DeepLabv3-MobileViT (Section 4.2.2): PASCAL VOC-layout folders,
random resize + crop + flip of image and mask together, cross-entropy with ignore index 255,
the head (ASPP + classifier) at ``optim.head_lr_mult`` x the backbone's learning rate, and mIoU
from a dataset-level confusion matrix at the masks' own sizes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...data.folders import BadSample
from ...data.synthetic import SHAPES, write_shapes_voc
from ...data.voc import (
    IGNORE_INDEX,
    SegEvalTransform,
    SegTrainTransform,
    VOCSegmentation,
    collate_segmentation,
)
from .. import dist as D
from ..config import SegTrainConfig
from ..errors import TrainingError
from ..metrics import ConfusionMatrix
from .base import Batching, KeyedDataset, StepOutput, Task


def head_and_body_groups(model: nn.Module, lr: float, head_lr_mult: float) -> list[dict[str, Any]]:
    """Backbone parameters at ``lr``, everything else (the head) at ``lr * head_lr_mult``.

    Args:
        model: a DeepLabv3 or SSDLite model.
        lr: the backbone's rate.
        head_lr_mult: the head's rate multiplier.

    Returns:
        AdamW's parameter groups.
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    body = [p for n, p in named if n.startswith("backbone.")]
    head = [p for n, p in named if not n.startswith("backbone.")]
    return [{"params": body, "lr": lr}, {"params": head, "lr": lr * head_lr_mult}]


class Segmentation(Task):
    name = "segmentation"
    config_cls = SegTrainConfig
    metric = "miou"
    metric_label = "mIoU"

    def __init__(self, cfg: SegTrainConfig, ctx: Any, out: Path) -> None:
        super().__init__(cfg, ctx, out)
        self.criterion = nn.CrossEntropyLoss(
            ignore_index=IGNORE_INDEX, label_smoothing=cfg.optim.label_smoothing
        )

    def prepare_data(self) -> None:
        d = self.cfg.data
        if d.dataset == "voc":
            self.root, self.builtin_names = Path(d.root), []
            return
        root = Path(d.root) if d.root else self.out / "data" / "shapes_voc"
        self.root = write_shapes_voc(root, size=d.builtin_size, n_train=d.builtin_train, n_val=d.builtin_val)
        self.builtin_names = ["background", *SHAPES]

    def build_datasets(
        self, train: bool = True, classes: list[str] | None = None
    ) -> tuple[KeyedDataset | None, KeyedDataset]:
        d, k = self.cfg.data, self.cfg.model.num_classes
        names = classes or self.builtin_names or None
        if d.dataset == "shapes" and k != len(self.builtin_names):
            raise TrainingError(
                f"the built-in shapes set has {len(self.builtin_names)} classes; "
                f"set model.num_classes={len(self.builtin_names)}"
            )
        train_ds = None
        if train:
            tf = SegTrainTransform(d.crop_size, tuple(d.scale_range), d.hflip)  # type: ignore[arg-type]
            train_ds = KeyedDataset(VOCSegmentation(self.root, d.train_split, tf, k, d.on_bad_sample, names))
        val = VOCSegmentation(
            self.root, d.val_split, SegEvalTransform(d.eval_size), k, d.on_bad_sample, names
        )
        self.classes, self.num_classes = val.classes, k
        return train_ds, KeyedDataset(val)

    def batching(self) -> Batching:
        d = self.cfg.data
        return Batching((d.crop_size, d.crop_size), d.batch_size, None, 1)  # eval runs image by image

    collate = staticmethod(collate_segmentation)

    def bad_samples(self, batch: dict[str, Any]) -> tuple[list[BadSample], int]:
        return batch["bad"], batch["seen"]

    def usable(self, batch: dict[str, Any]) -> bool:
        return batch["count"] >= 2 and isinstance(batch["images"], torch.Tensor)  # BatchNorm needs 2

    def model_kwargs(self) -> dict[str, Any]:
        m = self.cfg.model
        return {**m.overrides, "backbone_weights": m.backbone_weights or None}

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        return head_and_body_groups(model, self.cfg.optim.lr, self.cfg.optim.head_lr_mult)

    def loss(self, model: nn.Module, batch: dict[str, Any]) -> StepOutput:
        x = self.to_device(batch["images"])
        y = batch["masks"].to(self.ctx.device)
        with self.ctx.autocast():
            logits = model(x)
        return StepOutput(self.criterion(logits.float(), y), x.shape[0])

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: Any) -> dict[str, Any]:
        """mIoU, per-class IoU and pixel accuracy on the validation split, at the masks' own sizes."""
        model.eval()
        cm = ConfusionMatrix(self.num_classes)
        for batch in loader:
            self.log_bad(batch["bad"])
            for image, mask in zip(batch["images"], batch["masks"], strict=True):
                x = self.to_device(image[None])
                with self.ctx.autocast():
                    logits = model.forward_lowres(x) if hasattr(model, "forward_lowres") else model(x)
                corners = getattr(model, "align_corners", False)  # as the head upsamples
                logits = F.interpolate(
                    logits.float(), size=mask.shape[-2:], mode="bilinear", align_corners=corners
                )
                cm.update(logits.argmax(1)[0].cpu(), mask)
        D.all_reduce_sum(cm.matrix, self.ctx.info)
        return cm.compute()

    def recalibration_batches(self, loader: Any) -> Iterator[torch.Tensor]:
        return (b["images"] for b in loader if isinstance(b["images"], torch.Tensor))

    def weights_extra(self) -> dict[str, Any]:
        return {"eval_size": self.cfg.data.eval_size}

    def split_name(self) -> str:
        return f"{self.root} ({self.cfg.data.val_split})"

    def report_lines(self, train_ds: Any, val_ds: Any) -> list[str]:
        return [
            f"- data: {self.root} ({len(train_ds)} train / {len(val_ds)} val images, {len(self.classes)} classes)"
        ]
