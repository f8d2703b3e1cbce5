"""Training and evaluating DeepLabv3-MobileViT (Section 4.2.2 of the paper).

AdamW with the head (ASPP + classifier) at ``optim.head_lr_mult`` x the backbone's learning
rate, per-step warmup then cosine, cross-entropy with ignore index 255, EMA (evaluated beside
the raw model, best EMA kept), joint image/mask augmentation, mIoU from a dataset-level
confusion matrix. Training drops the last incomplete batch (BatchNorm in the ASPP pooling branch
cannot train on one sample). DDP through torchrun as for classification.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data.synthetic import SHAPES, write_shapes_voc
from ..data.voc import (
    IGNORE_INDEX,
    SegEvalTransform,
    SegTrainTransform,
    VOCSegmentation,
    collate_segmentation,
)
from . import dist as D
from .config import SegTrainConfig
from .loop import TrainingError
from .metrics import ConfusionMatrix
from .task_loop import HeadTrainer, run_training


def prepare_seg_root(cfg: SegTrainConfig, out_dir: Path) -> tuple[Path, list[str]]:
    d = cfg.data
    if d.dataset == "voc":
        return Path(d.root), []
    root = Path(d.root) if d.root else out_dir / "data" / "shapes_voc"
    return write_shapes_voc(root, size=d.builtin_size, n_train=d.builtin_train, n_val=d.builtin_val), [
        "background",
        *SHAPES,
    ]


class SegTrainer(HeadTrainer):
    task = "segmentation"
    metric = "miou"
    metric_label = "mIoU"

    def build_data(self) -> None:
        cfg = self.cfg
        self.root, names = D.main_first(self.info, lambda: prepare_seg_root(cfg, self.out))
        d, m = cfg.data, cfg.model
        if d.dataset == "shapes" and m.num_classes != len(names):
            raise TrainingError(
                f"the built-in shapes set has {len(names)} classes; set model.num_classes={len(names)}"
            )
        k = m.num_classes
        self.train_ds = VOCSegmentation(
            self.root,
            d.train_split,
            SegTrainTransform(d.crop_size, tuple(d.scale_range), d.hflip),
            k,  # type: ignore[arg-type]
            d.on_bad_sample,
            names or None,
        )
        self.val_ds = VOCSegmentation(
            self.root, d.val_split, SegEvalTransform(d.eval_size), k, d.on_bad_sample, names or None
        )
        self.classes = self.train_ds.classes
        self.make_loaders(collate_segmentation, val_batch_size=1)  # eval runs image by image
        self.criterion = nn.CrossEntropyLoss(
            ignore_index=IGNORE_INDEX, label_smoothing=cfg.optim.label_smoothing
        )

    def batch_loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, int] | None:
        self.log_bad(batch["bad"])
        if batch["count"] < 2 or not isinstance(batch["images"], torch.Tensor):
            return None  # too few good samples left for BatchNorm
        x = batch["images"].to(self.info.device, memory_format=self.memory_format)
        y = batch["masks"].to(self.info.device)
        with self.autocast():
            logits = self.ddp(x)
        return self.criterion(logits.float(), y), x.shape[0]

    def recalibration_batches(self) -> Iterator[torch.Tensor]:
        return (b["images"] for b in self.train_loader if isinstance(b["images"], torch.Tensor))

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, Any]:
        """mIoU, per-class IoU and pixel accuracy on the validation split, at the masks' own sizes."""
        model.eval()
        cm = ConfusionMatrix(self.cfg.model.num_classes)
        for batch in self.val_loader:
            self.log_bad(batch["bad"])
            for image, mask in zip(batch["images"], batch["masks"], strict=True):
                x = image[None].to(self.info.device, memory_format=self.memory_format)
                with self.autocast():
                    logits = model.forward_lowres(x) if hasattr(model, "forward_lowres") else model(x)
                logits = F.interpolate(
                    logits.float(), size=mask.shape[-2:], mode="bilinear", align_corners=False
                )
                cm.update(logits.argmax(1)[0].cpu(), mask)
        D.all_reduce_sum(cm.matrix, self.info)
        return cm.compute()

    def weights_metadata(self) -> dict[str, Any]:
        return {"eval_size": self.cfg.data.eval_size}

    def report_lines(self) -> list[str]:
        return [
            f"- data: {self.root} ({len(self.train_ds)} train / {len(self.val_ds)} val images, "
            f"{len(self.classes)} classes)"
        ]


def train_segmentation(cfg: SegTrainConfig, resume: str | Path | None = None) -> dict[str, Any]:
    return run_training(SegTrainer, cfg, resume)
