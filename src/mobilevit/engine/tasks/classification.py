"""Image classification with the paper's recipe (Section 4.1): ImageNet-style folders,
RandomResizedCrop + flip at the multi-scale sampler's sizes, label-smoothed cross-entropy,
top-1 / top-5 on the validation split."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...data import (
    BatchMix,
    EvalTransform,
    ImageFolderDataset,
    TrainTransform,
    collate_skip_bad,
    write_digits,
    write_shapes,
)
from ...data.folders import BadSample
from .. import dist as D
from ..config import TrainConfig
from ..errors import TrainingError
from ..metrics import topk_correct
from .base import Batching, StepOutput, Task


def prepare_data_root(cfg: TrainConfig, out_dir: Path) -> Path:
    """The folder the datasets read: ``data.root``, or a built-in set written there (or in the run)."""
    d = cfg.data
    if d.dataset == "folder":
        return Path(d.root)
    root = Path(d.root) if d.root else out_dir / "data" / d.dataset
    if d.dataset == "digits":
        return write_digits(root, size=d.builtin_size, seed=0)
    return write_shapes(root, size=d.builtin_size, seed=0)


class Classification(Task):
    name = "classification"
    config_cls = TrainConfig
    metric = "top1"
    metric_label = "top-1"

    def __init__(self, cfg: TrainConfig, ctx: Any, out: Path) -> None:
        super().__init__(cfg, ctx, out)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=cfg.optim.label_smoothing)

    def prepare_data(self) -> None:
        self.root = prepare_data_root(self.cfg, self.out)

    def build_datasets(
        self, train: bool = True, classes: list[str] | None = None
    ) -> tuple[ImageFolderDataset | None, ImageFolderDataset]:
        d = self.cfg.data
        train_ds = None
        if train:
            train_ds = ImageFolderDataset(
                self.root,
                d.train_split,
                TrainTransform(tuple(d.rrc_scale), d.hflip, d.interpolation, d.randaugment, d.random_erase),  # type: ignore[arg-type]
            )
            classes = train_ds.classes
        val_ds = ImageFolderDataset(
            self.root,
            d.val_split,
            EvalTransform(d.img_size, d.eval_resize or None, d.interpolation),
            classes=classes,
        )
        self.classes = val_ds.classes
        self.num_classes = self.cfg.model.num_classes or len(self.classes)
        if self.num_classes != len(self.classes):
            raise TrainingError(
                f"model.num_classes={self.num_classes} but {self.root / (d.train_split if train else d.val_split)} "
                f"has {len(self.classes)} classes"
            )
        self.mix = BatchMix(self.num_classes, d.mixup_alpha, d.cutmix_alpha)
        return train_ds, val_ds

    def batching(self) -> Batching:
        d = self.cfg.data
        return Batching(
            (d.img_size, d.img_size),
            d.batch_size,
            d.resolutions if d.multiscale else None,
            d.eval_batch_size or d.batch_size,
        )

    collate = staticmethod(collate_skip_bad)

    def bad_samples(self, batch: dict[str, Any]) -> tuple[list[BadSample], int]:
        return batch["bad"], batch["seen"]

    def usable(self, batch: dict[str, Any]) -> bool:
        return batch["targets"].numel() > 0

    def max_bad_fraction(self) -> float:
        return self.cfg.data.max_bad_fraction

    def loss(self, model: nn.Module, batch: dict[str, Any]) -> StepOutput:
        # MixUp / CutMix on the CPU batch: class probabilities [B, K] (or the labels themselves when off)
        x, soft = self.mix(batch["images"], batch["targets"])
        x, soft = self.to_device(x), soft.to(self.ctx.device)
        y = batch["targets"].to(self.ctx.device)
        with self.ctx.autocast():
            logits = model(x)
        loss = self.criterion(logits.float(), soft)
        correct = (logits.detach().argmax(1) == y).sum()  # against the unmixed labels
        return StepOutput(loss, y.numel(), {"top1": correct})

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: Any) -> dict[str, Any]:
        """Loss, top-1 and top-5 over the validation split (every rank's share summed)."""
        model.eval()
        totals = torch.zeros(4, dtype=torch.float64)  # loss sum, top1, top5, count
        for batch in loader:
            self.log_bad(batch["bad"])
            if batch["targets"].numel() == 0:
                continue
            x = self.to_device(batch["images"])
            y = batch["targets"].to(self.ctx.device)
            with self.ctx.autocast():
                logits = model(x)
            logits = logits.float()
            totals[0] += F.cross_entropy(logits, y, reduction="sum").item()
            c1, c5 = topk_correct(logits, y)
            totals[1] += c1
            totals[2] += c5
            totals[3] += y.numel()
        D.all_reduce_sum(totals, self.ctx.info)
        n = max(1.0, totals[3].item())
        return {
            "loss": totals[0].item() / n,
            "top1": totals[1].item() / n,
            "top5": totals[2].item() / n,
            "count": int(n),
        }

    def recalibration_batches(self, loader: Any) -> Iterator[torch.Tensor]:
        return (b["images"] for b in loader if b["targets"].numel() > 1)

    def weights_extra(self) -> dict[str, Any]:
        """How training evaluated (the eval resize and crop) and what it trained on: the data kind
        and root, so that an int8 export calibrates and judges on the model's own images."""
        d = self.cfg.data
        return {
            "img_size": d.img_size,
            "eval_resize": d.eval_resize or d.img_size + 32,
            "interpolation": d.interpolation,
            "train_data": {
                "dataset": d.dataset,
                "root": str(Path(self.root).resolve()),
                "train_split": d.train_split,
                "val_split": d.val_split,
            },
        }

    def split_name(self) -> str:
        return str(self.root / self.cfg.data.val_split)

    def report_lines(self, train_ds: Any, val_ds: Any) -> list[str]:
        return [
            f"- data: {self.root} ({len(train_ds)} train / {len(val_ds)} val images, {len(self.classes)} classes)"
        ]
