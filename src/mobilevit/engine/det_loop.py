"""Training and evaluating SSDLite-MobileViT (Section 4.2.1 of the paper).

The shared loop (:mod:`.task_loop`: AdamW, warmup + cosine, EMA, resume, DDP) with COCO-format
data, SSD's box-aware augmentation (IoU crop, photometric distortion, flip, resize to 320), the
SSD losses computed by torchvision (Smooth-L1 + cross-entropy with 3:1 hard negatives) and COCO
mAP from pycocotools on the validation annotations. Training drops the last incomplete batch
(BatchNorm cannot train on one sample).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..data.coco import CocoDetection, DetEvalTransform, DetTrainTransform, collate_detection
from ..data.synthetic import write_shapes_coco
from . import dist as D
from .config import DetTrainConfig
from .loop import TrainingError
from .metrics import coco_evaluate
from .task_loop import HeadTrainer, run_training


def prepare_det_root(cfg: DetTrainConfig, out_dir: Path) -> dict[str, Path]:
    """Image folders and annotation files of both splits (the built-in set is written first)."""
    d = cfg.data
    if d.dataset == "coco":
        root = Path(d.root)
        return {
            "train_images": root / d.train_images,
            "train_annotations": root / d.train_annotations,
            "val_images": root / d.val_images,
            "val_annotations": root / d.val_annotations,
        }
    root = Path(d.root) if d.root else out_dir / "data" / "shapes_coco"
    write_shapes_coco(root, size=d.builtin_size, n_train=d.builtin_train, n_val=d.builtin_val)
    return {
        "train_images": root / "train",
        "train_annotations": root / "annotations" / "instances_train.json",
        "val_images": root / "val",
        "val_annotations": root / "annotations" / "instances_val.json",
    }


class DetTrainer(HeadTrainer):
    task = "detection"
    metric = "map"
    metric_label = "COCO mAP@[.5:.95]"

    def build_data(self) -> None:
        cfg = self.cfg
        d, k = cfg.data, cfg.model.num_classes
        self.paths = D.main_first(self.info, lambda: prepare_det_root(cfg, self.out))
        self.root = self.paths["train_images"].parent
        train_tf = DetTrainTransform(d.image_size, d.hflip, d.photometric, d.iou_crop)
        self.train_ds = CocoDetection(
            self.paths["train_images"], self.paths["train_annotations"], train_tf, num_classes=k
        )
        self.val_ds = CocoDetection(
            self.paths["val_images"], self.paths["val_annotations"], DetEvalTransform(), num_classes=k
        )
        if self.val_ds.cat_ids != self.train_ds.cat_ids:
            raise TrainingError(
                f"{self.paths['train_annotations']} and {self.paths['val_annotations']} list different categories"
            )
        self.classes = self.train_ds.classes
        if d.dataset == "shapes" and k != len(self.classes):
            raise TrainingError(
                f"the built-in shapes set has {len(self.classes)} classes with the background; "
                f"set model.num_classes={len(self.classes)}"
            )
        self.make_loaders(collate_detection, d.eval_batch_size)

    def ssd_settings(self) -> dict[str, Any]:
        size = self.cfg.data.image_size
        return {"image_size": (size, size), **self.cfg.model.ssd}

    def model_kwargs(self) -> dict[str, Any]:
        return {**self.cfg.model.overrides, "ssd": self.ssd_settings()}

    def batch_loss(self, batch: tuple[list[torch.Tensor], list[dict]]) -> tuple[torch.Tensor, int]:
        images, targets = batch
        dev = self.info.device
        images = [im.to(dev) for im in images]
        targets = [{"boxes": t["boxes"].to(dev), "labels": t["labels"].to(dev)} for t in targets]
        with self.autocast():
            losses = self.ddp(images, targets)
        return losses["bbox_regression"].float() + losses["classification"].float(), len(images)

    def recalibration_batches(self) -> Iterator[torch.Tensor]:
        return (torch.stack(images) for images, _ in self.train_loader)

    @staticmethod
    def recalibration_forward(model: nn.Module, x: torch.Tensor) -> Any:
        return model.forward_raw(model.transform.normalize(x))  # type: ignore[operator]

    @torch.no_grad()
    def predict_split(self, model: nn.Module) -> list[dict[str, Any]]:
        """Detections of ``model`` on this process's share of the validation split."""
        model.eval()
        out = []
        for images, targets in self.val_loader:
            with self.autocast():
                dets = model([im.to(self.info.device) for im in images])
            for det, t in zip(dets, targets, strict=True):
                out.append({"image_id": int(t["image_id"]), **{k: v.float().cpu() for k, v in det.items()}})
        return out

    def evaluate(self, model: nn.Module) -> dict[str, Any]:
        """COCO box mAP@[.5:.95], mAP@.5, mAP@.75 and per-size APs (pycocotools) on the val split."""
        dets = self.predict_split(model)
        if self.info.distributed:
            parts: list[Any] = [None] * self.info.world_size
            dist.all_gather_object(parts, dets)
            dets = [d for part in parts for d in part]
        result: list[Any] = [None]
        if self.info.is_main:
            result[0] = coco_evaluate(self.paths["val_annotations"], dets, self.val_ds.cat_ids)
        if self.info.distributed:
            dist.broadcast_object_list(result, src=0)
        return result[0]

    def weights_metadata(self) -> dict[str, Any]:
        return {"ssd": self.ssd_settings(), "cat_ids": self.train_ds.cat_ids}

    def report_lines(self) -> list[str]:
        return [
            f"- data: {self.paths['train_annotations']} ({len(self.train_ds)} train / {len(self.val_ds)} val "
            f"images, {len(self.classes) - 1} classes + background)",
            f"- training boxes clipped / dropped while loading: {json.dumps(self.train_ds.stats)}",
        ]


def train_detection(cfg: DetTrainConfig, resume: str | Path | None = None) -> dict[str, Any]:
    return run_training(DetTrainer, cfg, resume)
