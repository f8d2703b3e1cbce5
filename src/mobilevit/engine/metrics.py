"""Top-k accuracy, COCO mAP (pycocotools), mIoU, per-epoch metric files (CSV + JSONL,
TensorBoard when installed) and curves."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch


def topk_correct(logits: torch.Tensor, targets: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> list[int]:
    """Number of samples whose target is among the top-k logits, for each k (k capped at #classes).

    Args:
        logits: ``[B, K]``.
        targets: ``[B]`` class indices.
        ks: the k's to count.

    Returns:
        One count per k.
    """
    maxk = min(max(ks), logits.shape[1])
    pred = logits.topk(maxk, dim=1).indices  # [B, maxk]
    hit = pred.eq(targets[:, None])
    return [int(hit[:, : min(k, maxk)].any(dim=1).sum()) for k in ks]


class MetricsLog:
    """Appends one row per epoch to ``metrics.csv`` and ``metrics.jsonl`` (and TensorBoard)."""

    def __init__(self, out_dir: str | Path) -> None:
        self.dir = Path(out_dir)
        self.csv = self.dir / "metrics.csv"
        self.jsonl = self.dir / "metrics.jsonl"
        self.tb = None
        try:  # optional
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(self.dir / "tensorboard"))
        except Exception:  # tensorboard not installed
            self.tb = None

    def rows(self) -> list[dict[str, Any]]:
        """Every row written so far, from ``metrics.jsonl``."""
        if not self.jsonl.is_file():
            return []
        return [json.loads(line) for line in self.jsonl.read_text().splitlines() if line.strip()]

    def clear(self) -> None:
        """On a fresh start: remove an earlier run's rows (`append` writes the files again)."""
        self.jsonl.unlink(missing_ok=True)
        self.csv.unlink(missing_ok=True)

    def truncate_after(self, epoch: int) -> None:
        """On resume: drop rows of epochs the resumed run will redo."""
        keep = [r for r in self.rows() if r["epoch"] <= epoch]
        self.jsonl.write_text("".join(json.dumps(r) + "\n" for r in keep))
        self._rewrite_csv(keep)

    def _rewrite_csv(self, rows: list[dict[str, Any]]) -> None:
        keys: list[str] = []
        for r in rows:
            keys += [k for k in r if k not in keys]
        with open(self.csv, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)

    def append(self, row: dict[str, Any]) -> None:
        """Write one epoch's row to the JSONL and CSV files (and TensorBoard)."""
        with open(self.jsonl, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        self._rewrite_csv(self.rows())
        if self.tb is not None:
            for k, v in row.items():
                if isinstance(v, int | float) and k != "epoch":
                    self.tb.add_scalar(k, v, row["epoch"])
            self.tb.flush()


def plot_curves(
    rows: list[dict[str, Any]], path: str | Path, title: str = "", metric: str = "top1"
) -> Path | None:
    """Loss and accuracy per epoch, train and validation, raw and EMA, as one PNG.

    Args:
        rows: the metrics rows (``metrics.jsonl``).
        path: the PNG to write.
        title: the figure's title.
        metric: ``top1``, ``miou`` or ``map``.

    Returns:
        ``path``, or None when there are no rows.
    """
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))

    def plot(ax, series: tuple[tuple[str, str], ...]) -> None:
        for key, label in series:
            if any(key in r for r in rows):
                ax.plot(
                    [r["epoch"] for r in rows if key in r],
                    [r[key] for r in rows if key in r],
                    marker=".",
                    label=label,
                )

    plot(ax1, (("train_loss", "train"), ("val_loss", "val"), ("val_ema_loss", "val (EMA)")))
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss")
    ax1.legend()
    names = {"top1": "top-1", "miou": "mIoU", "map": "mAP@[.5:.95]"}
    plot(
        ax2,
        (
            (f"val_{metric}", f"val {names[metric]}"),
            (f"val_ema_{metric}", f"val {names[metric]} (EMA)"),
            (f"train_{metric}", f"train {names[metric]}"),
        ),
    )
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("accuracy" if metric == "top1" else names[metric])
    ax2.set_ylim(0, 1)
    if ax2.get_legend_handles_labels()[0]:  # nothing to show before the first evaluation
        ax2.legend()
    ax1.set_xticks(epochs if len(epochs) <= 20 else ax1.get_xticks())
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


class ConfusionMatrix:
    """Dataset-level confusion matrix for semantic segmentation (rows: truth, columns: prediction).

    Pixels whose truth is ``ignore_index`` are left out. IoU of class c = TP / (TP + FP + FN);
    mIoU is the mean over classes that occur in the truth or the predictions (union > 0).
    """

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add the pixels of ``pred`` against ``target`` (``ignore_index`` pixels left out)."""
        if pred.shape != target.shape:
            raise ValueError(
                f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape"
            )
        keep = target != self.ignore_index
        t, p = target[keep].long(), pred[keep].long()
        if t.numel() and (int(t.max()) >= self.num_classes or int(t.min()) < 0):
            raise ValueError(
                f"target holds classes outside 0..{self.num_classes - 1} (and {self.ignore_index})"
            )
        idx = t * self.num_classes + p
        self.matrix += torch.bincount(idx.cpu(), minlength=self.num_classes**2).reshape(self.num_classes, -1)

    def compute(self) -> dict[str, Any]:
        """Per-class IoU (None for classes absent from both), mIoU and pixel accuracy."""
        m = self.matrix.double()
        tp = m.diag()
        union = m.sum(0) + m.sum(1) - tp
        iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))
        present = union > 0
        total = m.sum()
        return {
            "miou": float(iou[present].mean()) if present.any() else 0.0,
            "iou": [None if torch.isnan(v) else float(v) for v in iou],
            "pixel_acc": float(tp.sum() / total) if total > 0 else 0.0,
        }


# pycocotools' COCOeval.stats order, for the bbox summary with maxDets (1, 10, 100)
COCO_STATS = {"map": 0, "map50": 1, "map75": 2, "map_small": 3, "map_medium": 4, "map_large": 5, "mar_100": 8}


def _load_coco_gt(annotation_file: str | Path) -> Any:
    """The ground truth as a pycocotools ``COCO``, with the optional fields COCOeval reads filled in.

    ``info`` / ``licenses`` may be absent from a COCO file (some pycocotools versions copy
    ``dataset['info']`` in ``loadRes``); ``area`` defaults to the box area, ``iscrowd`` to 0.
    """
    from pycocotools.coco import COCO

    data = json.loads(Path(annotation_file).read_text())
    data.setdefault("info", {})
    data.setdefault("licenses", [])
    for ann in data.get("annotations", []):
        ann.setdefault("iscrowd", 0)
        if "area" not in ann:
            ann["area"] = float(ann["bbox"][2]) * float(ann["bbox"][3])
    gt = COCO()
    gt.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def _as_array(x: Any, width: int | None = None) -> np.ndarray:
    """A tensor / array / list as a float64 numpy array ([N, width] when ``width`` is given)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
    a = np.asarray(x, dtype=np.float64)
    return a.reshape(-1, width) if width else a.reshape(-1)  # [N, width] or [N]


def detections_to_coco(
    detections: list[dict[str, Any]], label_to_cat_id: Sequence[int] | Mapping[int, int]
) -> list[dict[str, Any]]:
    """Detections (xyxy boxes, contiguous labels) as COCO result entries (xywh, category ids).

    ``label_to_cat_id`` is a mapping label -> COCO category id (``CocoDetection.label_to_cat_id``)
    or the sequence of category ids of labels 1..K in order (``CocoDetection.cat_ids``).
    """
    mapping = (
        dict(label_to_cat_id)
        if isinstance(label_to_cat_id, Mapping)
        else {i + 1: int(c) for i, c in enumerate(label_to_cat_id)}
    )
    results = []
    for det in detections:
        boxes, scores = _as_array(det["boxes"], 4), _as_array(det["scores"])
        labels = _as_array(det["labels"]).astype(np.int64)
        if not len(boxes) == len(scores) == len(labels):
            raise ValueError(
                f"image {det['image_id']}: {len(boxes)} boxes, {len(scores)} scores, {len(labels)} labels"
            )
        for (x0, y0, x1, y1), score, label in zip(boxes, scores, labels, strict=True):
            if int(label) not in mapping:
                raise ValueError(f"image {det['image_id']}: label {label} has no COCO category id")
            results.append(
                {
                    "image_id": int(det["image_id"]),
                    "category_id": int(mapping[int(label)]),
                    "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                    "score": float(score),
                }
            )
    return results


def coco_evaluate(
    annotation_file: str | Path,
    detections: list[dict[str, Any]],
    label_to_cat_id: Sequence[int] | Mapping[int, int],
) -> dict[str, Any]:
    """COCO box mAP of ``detections`` against ``annotation_file``, computed by pycocotools' COCOeval.

    ``detections`` holds one item per evaluated image: ``{"image_id", "boxes" [N, 4] xyxy in the
    original pixels, "scores" [N], "labels" [N] contiguous 1..K}`` (tensors or arrays; N may be 0).
    Only the images listed are evaluated. ``label_to_cat_id``: see `detections_to_coco`.

    Returns ``map`` (AP@[.5:.95]), ``map50``, ``map75``, ``map_small``, ``map_medium``,
    ``map_large``, ``mar_100`` (AR with 100 detections an image) as floats, and ``summary``, the
    table pycocotools prints. As in pycocotools, a size class with no ground truth among the
    evaluated images scores -1. With no detections at all every figure is 0.

    Args:
        annotation_file: the split's COCO json.
        detections: one dict per evaluated image (see above).
        label_to_cat_id: the contiguous label -> COCO category id map.

    Returns:
        ``map``, ``map50``, ``map75``, ``map_small`` / ``_medium`` / ``_large`` and pycocotools' ``summary``.
    """
    from pycocotools.cocoeval import COCOeval

    gt = _load_coco_gt(annotation_file)
    img_ids = list(dict.fromkeys(int(d["image_id"]) for d in detections))
    unknown = sorted(set(img_ids) - set(gt.getImgIds()))
    if unknown:
        raise ValueError(f"{annotation_file}: detections for image ids not in the file: {unknown[:10]}")
    results = detections_to_coco(detections, label_to_cat_id)
    if not results:  # loadRes cannot take an empty list
        return {**{k: 0.0 for k in COCO_STATS}, "summary": "no detections: every figure is 0\n"}
    with contextlib.redirect_stdout(io.StringIO()):  # progress chatter
        dt = gt.loadRes(results)
        evaluator = COCOeval(gt, dt, iouType="bbox")
        evaluator.params.imgIds = img_ids
        evaluator.evaluate()
        evaluator.accumulate()
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        evaluator.summarize()
    return {
        **{k: float(evaluator.stats[i]) for k, i in COCO_STATS.items()},
        "summary": summary.getvalue(),
    }
