"""PASCAL VOC-format semantic segmentation data (Section 4.2.2 of the paper).

Layout: ``JPEGImages/<id>.jpg``, ``SegmentationClass/<id>.png`` (palette PNGs whose pixel values
are class indices, 255 = ignore), ``ImageSets/Segmentation/<split>.txt`` (one id a line).
Joint image/mask augmentation uses torchvision ``transforms.v2`` with ``tv_tensors.Mask``, so
masks are resized with nearest neighbour and padded with the ignore value.

Bad samples (a mask with values outside the classes and 255, a mask whose size differs from
its image, an unreadable file) raise an error naming the file, or, with ``on_bad="skip"``, come
back as `BadSample` for the collate function to drop and the loop to log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2 as T

from .folders import BadSample, DataError
from .images import IMAGE_READ_ERRORS, read_rgb

log = logging.getLogger(__name__)

IGNORE_INDEX = 255
VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip


def voc_palette(n: int = 256) -> list[int]:
    """The standard PASCAL VOC colour map (bit-interleaved), flat [r0, g0, b0, r1, ...]."""
    palette = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette += [r, g, b]
    return palette


class VOCSegmentation(Dataset):
    """A split of a VOC-layout folder; items are ``(image [3,H,W] float, mask [H,W] int64)``."""

    def __init__(
        self,
        root: str | Path,
        split: str,
        transform: Callable[[Any, Any], tuple[torch.Tensor, torch.Tensor]] | None = None,
        num_classes: int = 21,
        on_bad: str = "error",
        classes: list[str] | None = None,
    ) -> None:
        if on_bad not in ("error", "skip"):
            raise ValueError(f"on_bad must be 'error' or 'skip', got {on_bad!r}")
        self.root = Path(root)
        self.split, self.num_classes, self.on_bad = split, num_classes, on_bad
        self.transform = transform
        list_file = self.root / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not list_file.is_file():
            raise DataError(f"split {split!r} not found: {list_file} does not exist")
        self.classes = classes or self._class_names(num_classes)
        ids = [line.strip() for line in list_file.read_text().splitlines() if line.strip()]
        if not ids:
            raise DataError(f"{list_file} lists no ids")
        self.samples: list[tuple[str, Path, Path]] = []
        self.missing: list[str] = []
        for i in ids:
            img, mask = self.root / "JPEGImages" / f"{i}.jpg", self.root / "SegmentationClass" / f"{i}.png"
            absent = [str(p) for p in (img, mask) if not p.is_file()]
            if absent:
                msg = f"id {i!r} listed in {list_file} has no file {' / '.join(absent)}"
                if on_bad == "error":
                    raise DataError(msg)
                log.warning("skipping %s", msg)
                self.missing.append(i)
                continue
            self.samples.append((i, img, mask))
        if not self.samples:
            raise DataError(f"{list_file}: none of the {len(ids)} listed ids has its files")

    def _class_names(self, num_classes: int) -> list[str]:
        """Names from ``<root>/classes.txt`` (one a line) if present, else VOC's or the indices."""
        names_file = self.root / "classes.txt"
        if names_file.is_file():
            names = [n.strip() for n in names_file.read_text().splitlines() if n.strip()]
            if len(names) != num_classes:
                raise DataError(f"{names_file} names {len(names)} classes, the model has {num_classes}")
            return names
        return list(VOC_CLASSES) if num_classes == 21 else [str(i) for i in range(num_classes)]

    def __len__(self) -> int:
        return len(self.samples)

    def _bad(self, path: Path, msg: str) -> BadSample:
        if self.on_bad == "error":
            raise DataError(f"{path}: {msg}")
        return BadSample(str(path), msg)

    def load(self, index: int) -> tuple[Image.Image, np.ndarray] | BadSample:
        """Sample ``index`` untransformed: the RGB image and its ``[H, W]`` int64 class mask, checked
        (readable, same size, values below ``num_classes`` or 255); a bad one raises a `DataError`
        or, with ``on_bad="skip"``, is returned as a `BadSample`."""
        sid, img_path, mask_path = self.samples[index]
        try:
            image = read_rgb(img_path)
            with Image.open(mask_path) as m:
                if m.mode not in ("P", "L", "I", "I;16"):
                    return self._bad(mask_path, f"mask mode {m.mode!r} is not a class-index image (P or L)")
                mask = np.array(m)
        except IMAGE_READ_ERRORS as e:
            return self._bad(
                mask_path if "mask" in str(e).lower() else img_path, f"unreadable ({type(e).__name__}: {e})"
            )
        if mask.shape != (image.height, image.width):
            return self._bad(
                mask_path,
                f"mask size {mask.shape[1]}x{mask.shape[0]} differs from image {image.width}x{image.height}",
            )
        values = np.unique(mask)
        wrong = [int(v) for v in values if v >= self.num_classes and v != IGNORE_INDEX]
        if wrong:
            return self._bad(
                mask_path,
                f"mask values {wrong} are outside the {self.num_classes} classes and {IGNORE_INDEX} (ignore)",
            )
        return image, mask.astype(np.int64)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor] | BadSample:
        loaded = self.load(index)
        if isinstance(loaded, BadSample):
            return loaded
        image, mask = loaded
        img_t = tv_tensors.Image(T.functional.pil_to_tensor(image))
        mask_t = tv_tensors.Mask(torch.from_numpy(mask))
        if self.transform is None:
            return img_t.float() / 255.0, mask_t.long()
        return self.transform(img_t, mask_t)


@dataclass
class SegTrainTransform:
    """Random resize (scale of ``crop``), random crop with fill 255 for the mask, flip."""

    crop: int = 512
    scale: tuple[float, float] = (0.5, 2.0)
    hflip: float = 0.5

    def __post_init__(self) -> None:
        ops = [
            T.RandomResize(
                int(self.scale[0] * self.crop), int(self.scale[1] * self.crop) + 1, antialias=True
            ),
            T.RandomCrop(
                self.crop, pad_if_needed=True, fill={tv_tensors.Image: 0, tv_tensors.Mask: IGNORE_INDEX}
            ),
        ]
        if self.hflip > 0:
            ops.append(T.RandomHorizontalFlip(self.hflip))
        ops.append(T.ToDtype({tv_tensors.Image: torch.float32, tv_tensors.Mask: torch.int64}, scale=True))
        self._ops = T.Compose(ops)

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._ops(image, mask)


@dataclass
class SegEvalTransform:
    """Resize the image's shorter side to ``size``; the mask stays at its original size."""

    size: int = 512

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        img = T.functional.resize(image, self.size, antialias=True)
        return T.functional.to_dtype(img, torch.float32, scale=True).as_subclass(torch.Tensor), mask.long()


def collate_segmentation(batch: list[Any]) -> dict[str, Any]:
    """Batch ``(image, mask)`` pairs, setting `BadSample` entries apart.

    Returns ``{"images", "masks", "bad", "seen", "count"}``: stacked tensors when every good
    sample has the same shape, else lists of tensors; the bad samples; the batch's length and
    the number of good samples.
    """
    good = [b for b in batch if not isinstance(b, BadSample)]
    bad = [b for b in batch if isinstance(b, BadSample)]
    if good and len({tuple(g[0].shape) for g in good}) == 1 and len({tuple(g[1].shape) for g in good}) == 1:
        images = torch.stack([torch.as_tensor(g[0]) for g in good])
        masks = torch.stack([torch.as_tensor(g[1]) for g in good])
    else:
        images = [torch.as_tensor(g[0]) for g in good]  # type: ignore[assignment]
        masks = [torch.as_tensor(g[1]) for g in good]  # type: ignore[assignment]
    return {"images": images, "masks": masks, "bad": bad, "seen": len(batch), "count": len(good)}
