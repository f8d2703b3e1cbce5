"""Object detection with SSDLite-MobileViT (Section 4.2.1): COCO-format annotations, SSD's
box-aware augmentation (photometric distortion, IoU crop, flip, resize), the SSD losses
computed by torchvision (Smooth-L1 + cross-entropy with 3:1 hard negatives), and COCO mAP from
pycocotools on the validation annotations."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ...data.coco import CocoDetection, DetEvalTransform, DetTrainTransform, collate_detection
from ...data.synthetic import write_shapes_coco
from ..config import ConfigError, DetTrainConfig
from ..errors import TrainingError
from ..metrics import coco_evaluate
from .base import Batching, KeyedDataset, StepOutput, Task
from .segmentation import head_and_body_groups


class Detection(Task):
    name = "detection"
    config_cls = DetTrainConfig
    metric = "map"
    metric_label = "COCO mAP@[.5:.95]"

    def __init__(self, cfg: DetTrainConfig, ctx: Any, out: Path) -> None:
        super().__init__(cfg, ctx, out)
        if cfg.optim.label_smoothing:
            raise ConfigError(
                f"optim.label_smoothing={cfg.optim.label_smoothing}: SSD's classification loss (torchvision, "
                "with hard-negative mining) has no label smoothing; set it to 0 for detection"
            )

    def prepare_data(self) -> None:
        d = self.cfg.data
        if d.dataset == "coco":
            root = Path(d.root)
            self.paths = {
                "train_images": root / d.train_images,
                "train_annotations": root / d.train_annotations,
                "val_images": root / d.val_images,
                "val_annotations": root / d.val_annotations,
            }
            return
        root = Path(d.root) if d.root else self.out / "data" / "shapes_coco"
        write_shapes_coco(root, size=d.builtin_size, n_train=d.builtin_train, n_val=d.builtin_val)
        self.paths = {
            "train_images": root / "train",
            "train_annotations": root / "annotations" / "instances_train.json",
            "val_images": root / "val",
            "val_annotations": root / "annotations" / "instances_val.json",
        }

    def build_datasets(
        self, train: bool = True, classes: list[str] | None = None
    ) -> tuple[KeyedDataset | None, KeyedDataset]:
        d, k, p = self.cfg.data, self.cfg.model.num_classes, self.paths
        val = CocoDetection(p["val_images"], p["val_annotations"], DetEvalTransform(), num_classes=k)
        self.cat_ids = val.cat_ids  # the validation annotations' ids, which the mAP is scored on
        self.classes, self.num_classes = val.classes, k
        train_ds = None
        if train:
            tf = DetTrainTransform(d.image_size, d.hflip, d.photometric, d.iou_crop)
            train_set = CocoDetection(p["train_images"], p["train_annotations"], tf, num_classes=k)
            if val.cat_ids != train_set.cat_ids:
                raise TrainingError(
                    f"{p['train_annotations']} and {p['val_annotations']} list different categories"
                )
            self.classes, self.train_stats = train_set.classes, train_set.stats
            train_ds = KeyedDataset(train_set)
        if d.dataset == "shapes" and k != len(self.classes):
            raise TrainingError(
                f"the built-in shapes set has {len(self.classes)} classes with the background; "
                f"set model.num_classes={len(self.classes)}"
            )
        return train_ds, KeyedDataset(val)

    def batching(self) -> Batching:
        d = self.cfg.data
        return Batching((d.image_size, d.image_size), d.batch_size, None, d.eval_batch_size)

    collate = staticmethod(collate_detection)

    def bad_samples(self, batch: tuple[list[torch.Tensor], list[dict]]) -> tuple[list, int]:
        return [], len(batch[0])

    def ssd_settings(self) -> dict[str, Any]:
        """The SSDLite settings of the model: ``model.ssd`` with the data's image size."""
        size = self.cfg.data.image_size
        return {"image_size": (size, size), **self.cfg.model.ssd}

    def model_kwargs(self) -> dict[str, Any]:
        m = self.cfg.model
        return {**m.overrides, "ssd": self.ssd_settings(), "backbone_weights": m.backbone_weights or None}

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        return head_and_body_groups(model, self.cfg.optim.lr, self.cfg.optim.head_lr_mult)

    def loss(self, model: nn.Module, batch: tuple[list[torch.Tensor], list[dict]]) -> StepOutput:
        images, targets = batch
        dev = self.ctx.device
        images = [im.to(dev) for im in images]
        targets = [{"boxes": t["boxes"].to(dev), "labels": t["labels"].to(dev)} for t in targets]
        with self.ctx.autocast():
            losses = model(images, targets)
        return StepOutput(losses["bbox_regression"].float() + losses["classification"].float(), len(images))

    @torch.no_grad()
    def predict_split(self, model: nn.Module, loader: Any) -> list[dict[str, Any]]:
        """Detections of ``model`` on this process's share of the validation split."""
        model.eval()
        out = []
        for images, targets in loader:
            with self.ctx.autocast():
                dets = model([im.to(self.ctx.device) for im in images])
            for det, t in zip(dets, targets, strict=True):
                out.append({"image_id": int(t["image_id"]), **{k: v.float().cpu() for k, v in det.items()}})
        return out

    def evaluate(self, model: nn.Module, loader: Any) -> dict[str, Any]:
        """COCO box mAP@[.5:.95], mAP@.5, mAP@.75 and per-size APs (pycocotools) on the val split."""
        info = self.ctx.info
        dets = self.predict_split(model, loader)
        if info.distributed:
            parts: list[Any] = [None] * info.world_size
            dist.all_gather_object(parts, dets)
            dets = [d for part in parts for d in part]
        result: list[Any] = [None]
        if info.is_main:
            result[0] = coco_evaluate(self.paths["val_annotations"], dets, self.cat_ids)
        if info.distributed:
            dist.broadcast_object_list(result, src=0)
        return result[0]

    def recalibration_batches(self, loader: Any) -> Iterator[torch.Tensor]:
        return (torch.stack(images) for images, _ in loader)

    @staticmethod
    def recalibration_forward(model: nn.Module, x: torch.Tensor) -> Any:
        return model.forward_raw(model.transform.normalize(x))  # type: ignore[operator]

    def weights_extra(self) -> dict[str, Any]:
        return {"ssd": self.ssd_settings(), "cat_ids": self.cat_ids}

    def split_name(self) -> str:
        return str(self.paths["val_annotations"])

    def report_lines(self, train_ds: Any, val_ds: Any) -> list[str]:
        return [
            f"- data: {self.paths['train_annotations']} ({len(train_ds)} train / {len(val_ds)} val "
            f"images, {len(self.classes) - 1} classes + background)",
            f"- training boxes clipped / dropped while loading: {json.dumps(self.train_stats)}",
        ]
