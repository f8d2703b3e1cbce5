"""COCO-format object detection data for SSDLite (Section 4.2.1 of the paper).

Layout: an image folder plus ``annotations/instances_<split>.json`` in the COCO format
(``images``, ``annotations`` with ``bbox = [x, y, w, h]`` in pixels, ``categories``).
COCO category ids are mapped to contiguous labels ``1..K`` in sorted-id order; 0 is background.

The annotation file is checked when the dataset is built, so training fails before any work:
an annotation pointing at an unknown image or category, or an image file missing on disk,
raises `DataError` naming the file and the ids. Boxes partly outside their image are
clipped to it; zero-area, inverted or fully outside boxes are dropped; crowd regions are left
out of the training targets (pycocotools' evaluation reads them from the file anyway). What was
clipped or dropped is counted in ``stats`` and reported in one warning.

Augmentation follows the cvnets / SSD recipe with torchvision ``transforms.v2`` and
``tv_tensors.BoundingBoxes``: photometric distortion, IoU crop, horizontal flip, resize to 320.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2 as T

from .folders import DataError
from .images import IMAGE_READ_ERRORS, read_rgb

log = logging.getLogger("mobilevit.data")

Target = dict[str, Any]
_MAX_IDS_LISTED = 10
_CLIP_TOLERANCE = 1e-3  # pixels: float noise in x + w is clipped silently, not counted


def _load_json(annotation_file: Path) -> dict[str, Any]:
    """The annotation file as a dict with ``images``, ``annotations`` and ``categories``."""
    try:
        data = json.loads(annotation_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{annotation_file}: cannot read COCO annotations ({e})") from e
    if not isinstance(data, dict):
        raise DataError(f"{annotation_file}: not a COCO annotation file (top level is not an object)")
    missing = [k for k in ("images", "annotations", "categories") if not isinstance(data.get(k), list)]
    if missing:
        raise DataError(f"{annotation_file}: not a COCO annotation file (missing or not a list: {missing})")
    return data


def _require(entry: Any, keys: tuple[str, ...], where: str) -> None:
    """DataError when a COCO entry is not an object holding ``keys``."""
    missing = [k for k in keys if not isinstance(entry, dict) or k not in entry]
    if missing:
        raise DataError(f"{where} lacks {missing}: {entry!r}"[:300])


def _xyxy_in_image(
    bbox: Any, width: float, height: float, where: str
) -> tuple[tuple[float, float, float, float] | None, bool]:
    """COCO ``[x, y, w, h]`` as xyxy clipped to the image; ``(None, False)`` when nothing is left.

    The flag says whether clipping changed the box.
    """
    if not isinstance(bbox, list | tuple) or len(bbox) != 4:
        raise DataError(f"{where}: bbox must be [x, y, w, h], got {bbox!r}")
    x, y, w, h = (float(v) for v in bbox)
    if w <= 0 or h <= 0:
        return None, False
    x0, y0 = min(max(x, 0.0), width), min(max(y, 0.0), height)
    x1, y1 = min(max(x + w, 0.0), width), min(max(y + h, 0.0), height)
    if x1 <= x0 or y1 <= y0:
        return None, False
    moved = max(abs(x0 - x), abs(y0 - y), abs(x1 - x - w), abs(y1 - y - h))
    return (x0, y0, x1, y1), moved > _CLIP_TOLERANCE


class CocoDetection(Dataset):
    """A COCO-format detection split; items are ``(image [3,H,W] float in [0,1], target)``.

    ``target`` holds ``boxes`` (float32 [N, 4], xyxy, in pixels of the returned image),
    ``labels`` (int64 [N], contiguous 1..K) and ``image_id`` (the COCO image id).
    ``transform(image, target)`` receives a ``tv_tensors.Image`` (uint8) and a dict with
    ``boxes`` (``tv_tensors.BoundingBoxes``) and ``labels``, and returns the same pair.
    ``num_classes``, when given, counts the background and must cover every category.
    """

    def __init__(
        self,
        images_dir: str | Path,
        annotation_file: str | Path,
        transform: Callable[[tv_tensors.Image, Target], tuple[torch.Tensor, Target]] | None = None,
        num_classes: int | None = None,
    ) -> None:
        self.images_dir = Path(images_dir)
        self.annotation_file = Path(annotation_file)
        self.transform = transform
        data = _load_json(self.annotation_file)
        self._read_categories(data["categories"], num_classes)
        self._read_images(data["images"])
        self._read_annotations(data["annotations"])

    # ---- parsing --------------------------------------------------------------------------------

    def _read_categories(self, categories: list[dict[str, Any]], num_classes: int | None) -> None:
        for c in categories:
            _require(c, ("id",), f"{self.annotation_file}: category")
        cats = sorted(categories, key=lambda c: int(c["id"]))
        self.cat_ids: list[int] = [int(c["id"]) for c in cats]
        if len(set(self.cat_ids)) != len(self.cat_ids):
            raise DataError(f"{self.annotation_file}: duplicate category ids in {self.cat_ids}")
        self.classes: list[str] = ["background", *(str(c.get("name", c["id"])) for c in cats)]
        self.cat_id_to_label: dict[int, int] = {cid: i + 1 for i, cid in enumerate(self.cat_ids)}
        self.label_to_cat_id: dict[int, int] = {i + 1: cid for i, cid in enumerate(self.cat_ids)}
        if num_classes is not None and len(self.classes) > num_classes:
            raise DataError(
                f"{self.annotation_file}: {len(self.cat_ids)} categories + background = {len(self.classes)} "
                f"classes, more than num_classes={num_classes}"
            )

    def _read_images(self, images: list[dict[str, Any]]) -> None:
        self.image_ids: list[int] = []
        self._files: dict[int, Path] = {}
        self._sizes: dict[int, tuple[int, int]] = {}  # image id -> (width, height)
        for entry in images:
            _require(entry, ("id", "file_name"), f"{self.annotation_file}: image entry")
            image_id = int(entry["id"])
            if image_id in self._files:
                raise DataError(f"{self.annotation_file}: image id {image_id} appears twice in 'images'")
            path = self.images_dir / entry["file_name"]
            if not path.is_file():
                raise DataError(
                    f"{self.annotation_file}: image file {path} (image id {image_id}) does not exist"
                )
            self.image_ids.append(image_id)
            self._files[image_id] = path
            self._sizes[image_id] = self._entry_size(entry, path)

    def _entry_size(self, entry: dict[str, Any], path: Path) -> tuple[int, int]:
        """(width, height) from the image entry, else from the file's header."""
        if "width" in entry and "height" in entry:
            return int(entry["width"]), int(entry["height"])
        try:
            with Image.open(path) as img:
                return img.size
        except IMAGE_READ_ERRORS as e:
            raise DataError(f"cannot read image {path} (image id {entry['id']}): {e}") from e

    def _read_annotations(self, annotations: list[dict[str, Any]]) -> None:
        name = self.annotation_file.name
        boxes: dict[int, list[tuple[float, float, float, float]]] = {i: [] for i in self.image_ids}
        labels: dict[int, list[int]] = {i: [] for i in self.image_ids}
        self.stats = {"clipped": 0, "dropped": 0, "crowd": 0}
        changed: list[int] = []  # annotation ids of clipped or dropped boxes
        for ann in annotations:
            _require(ann, ("image_id", "category_id"), f"{name}: annotation")
            ann_id, image_id, cat_id = ann.get("id"), int(ann["image_id"]), int(ann["category_id"])
            if image_id not in self._sizes:
                raise DataError(f"{name}: annotation id {ann_id} refers to unknown image id {image_id}")
            if cat_id not in self.cat_id_to_label:
                raise DataError(
                    f"{name}: annotation id {ann_id} has category id {cat_id}, not among the categories "
                    f"{self.cat_ids} (label outside the class range)"
                )
            if ann.get("iscrowd", 0):
                self.stats["crowd"] += 1
                continue
            width, height = self._sizes[image_id]
            box, clipped = _xyxy_in_image(ann.get("bbox"), width, height, f"{name}: annotation id {ann_id}")
            if box is None:
                self.stats["dropped"] += 1
                changed.append(ann_id)
                continue
            if clipped:
                self.stats["clipped"] += 1
                changed.append(ann_id)
            boxes[image_id].append(box)
            labels[image_id].append(self.cat_id_to_label[cat_id])
        self._boxes = {
            i: torch.tensor(b, dtype=torch.float32).reshape(-1, 4) for i, b in boxes.items()
        }  # [N, 4]
        self._labels = {i: torch.tensor(v, dtype=torch.int64) for i, v in labels.items()}  # [N]
        self._warn_changed(changed)

    def _warn_changed(self, changed: list[int]) -> None:
        if not changed:
            return
        ids = ", ".join(str(i) for i in changed[:_MAX_IDS_LISTED]) + (
            ", ..." if len(changed) > _MAX_IDS_LISTED else ""
        )
        log.warning(
            "%s: %d boxes clipped to their image, %d zero-area, inverted or outside boxes dropped "
            "(annotation ids %s)",
            self.annotation_file.name,
            self.stats["clipped"],
            self.stats["dropped"],
            ids,
        )

    # ---- items ----------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.image_ids)

    def image_path(self, index: int) -> Path:
        """The file of the ``index``-th image."""
        return self._files[self.image_ids[index]]

    def _load_image(self, image_id: int) -> tv_tensors.Image:
        path = self._files[image_id]
        try:
            rgb = read_rgb(path)
        except IMAGE_READ_ERRORS as e:
            raise DataError(f"cannot read image {path} (image id {image_id}): {e}") from e
        if rgb.size != self._sizes[image_id]:
            raise DataError(
                f"image {path} (image id {image_id}) is {rgb.size[0]}x{rgb.size[1]}, but "
                f"{self.annotation_file.name} says {self._sizes[image_id][0]}x{self._sizes[image_id][1]}"
            )
        return tv_tensors.Image(T.functional.pil_to_tensor(rgb))  # uint8 [3, H, W]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Target]:
        image_id = self.image_ids[index]
        image = self._load_image(image_id)
        height, width = image.shape[-2:]
        target: Target = {
            "boxes": tv_tensors.BoundingBoxes(
                self._boxes[image_id].clone(), format="XYXY", canvas_size=(height, width)
            ),
            "labels": self._labels[image_id].clone(),
        }
        if self.transform is not None:
            image, target = self.transform(image, target)
        else:
            image = T.functional.to_dtype(image, torch.float32, scale=True)
        out = {
            "boxes": target["boxes"].as_subclass(torch.Tensor).to(torch.float32),
            "labels": torch.as_tensor(target["labels"], dtype=torch.int64),
            "image_id": image_id,
        }
        return image.as_subclass(torch.Tensor), out


def _labels_of(inputs: Any) -> torch.Tensor:
    """Labels getter for ``SanitizeBoundingBoxes``: inputs are ``(image, target)``."""
    return inputs[1]["labels"]


class DetTrainTransform:
    """Training augmentation: photometric distortion, IoU crop, flip, resize to ``size`` x ``size``.

    Boxes made degenerate by the crop are dropped together with their labels. The IoU crop is
    skipped for an image without boxes (torchvision's ``RandomIoUCrop`` would loop until it drew
    its "leave as is" option).
    """

    def __init__(self, size: int = 320, hflip: float = 0.5, photometric: float = 0.5, iou_crop: bool = True):
        self.photometric = T.RandomPhotometricDistort(p=photometric)
        self.iou_crop = T.RandomIoUCrop() if iou_crop else None
        self.finish = T.Compose(
            [
                T.RandomHorizontalFlip(hflip),
                T.Resize((size, size), antialias=True),
                T.SanitizeBoundingBoxes(labels_getter=_labels_of),
                T.ToDtype(torch.float32, scale=True),
            ]
        )

    def __call__(self, image: tv_tensors.Image, target: Target) -> tuple[torch.Tensor, Target]:
        image, target = self.photometric(image, target)
        if self.iou_crop is not None and target["boxes"].shape[0] > 0:
            image, target = self.iou_crop(image, target)
        return self.finish(image, target)


class DetEvalTransform:
    """Evaluation: float32 in [0, 1] at the original size.

    No resize: the detector's own ``GeneralizedRCNNTransform`` resizes and maps its boxes back,
    so detections come out in the original COCO pixel coordinates.
    """

    def __init__(self) -> None:
        self.to_float = T.ToDtype(torch.float32, scale=True)

    def __call__(self, image: tv_tensors.Image, target: Target) -> tuple[torch.Tensor, Target]:
        return self.to_float(image, target)


def collate_detection(batch: list[tuple[torch.Tensor, Target]]) -> tuple[list[torch.Tensor], list[Target]]:
    """Detection-style batch: a list of images (sizes may differ) and a list of targets."""
    return [image for image, _ in batch], [target for _, target in batch]
