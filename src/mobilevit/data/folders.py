"""ImageNet-style folder datasets (``<root>/<split>/<class>/<image>``) that skip bad files.

A corrupt, truncated or non-image file is not fatal: the sample comes back as a
`BadSample`, the collate function drops it, and the training loop counts and logs it
(with its path), failing only when bad files exceed a set fraction of what was read.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset

from .images import IMAGE_READ_ERRORS, read_rgb
from .sampler import SampleKey

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".gif")


class DataError(ValueError):
    """A dataset that cannot be used: missing split, empty class folder, no images."""


@dataclass(frozen=True)
class BadSample:
    path: str
    error: str


def find_split(root: str | Path, split: str) -> Path:
    """``root / split``, or a `DataError` naming the folders ``root`` does have."""
    path = Path(root) / split
    if not path.is_dir():
        have = sorted(p.name for p in Path(root).iterdir() if p.is_dir()) if Path(root).is_dir() else []
        raise DataError(f"split {split!r} not found: {path} is not a folder (found: {have or 'nothing'})")
    return path


def image_files(folder: Path) -> list[str]:
    """The image files under ``folder`` (sub-folders and links followed, as torchvision's
    ``ImageFolder``), sorted; hidden names (``.ipynb_checkpoints``, macOS ``._x.jpg``) left out."""
    found = []
    for parent, dirs, names in os.walk(folder, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [
            os.path.join(parent, n)
            for n in names
            if not n.startswith(".") and os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS
        ]
    return sorted(found)


class ImageFolderDataset(Dataset):
    """Images in ``<root>/<split>/<class>/``; classes are the sorted folder names.

    ``transform(image, key)`` receives the PIL image and the `SampleKey` (crop size and
    per-sample seed) and returns a tensor.
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        transform: Callable[[Image.Image, SampleKey], torch.Tensor] | None = None,
        classes: Sequence[str] | None = None,
    ) -> None:
        self.root = find_split(root, split)
        found = sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not found:
            raise DataError(f"{self.root}: no class folders")
        if classes is not None:
            missing = sorted(set(found) - set(classes))
            if missing:
                raise DataError(f"{self.root}: class folders {missing} are not among the training classes")
            self.classes = list(classes)
        else:
            self.classes = found
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.samples: list[tuple[str, int]] = []
        for c in found:
            files = image_files(self.root / c)
            if not files:
                raise DataError(
                    f"{self.root / c}: class folder {c!r} holds no images ({', '.join(IMAGE_EXTENSIONS)})"
                )
            self.samples += [(f, self.class_to_idx[c]) for f in files]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: SampleKey | int) -> tuple[torch.Tensor, int] | BadSample:
        if isinstance(key, int):
            key = SampleKey(key, 0, 0, key)
        path, target = self.samples[key.index]
        try:
            image = read_rgb(path)
        except IMAGE_READ_ERRORS as e:
            return BadSample(path, f"{type(e).__name__}: {e}")
        if self.transform is None:
            return image, target  # type: ignore[return-value]
        return self.transform(image, key), target


def collate_skip_bad(batch: list[Any]) -> dict[str, Any]:
    """Stack good samples; report the bad ones by path instead of failing."""
    good = [b for b in batch if not isinstance(b, BadSample)]
    bad = [b for b in batch if isinstance(b, BadSample)]
    images = torch.stack([g[0] for g in good]) if good else torch.empty(0)
    targets = torch.tensor([g[1] for g in good], dtype=torch.long)
    return {"images": images, "targets": targets, "bad": bad, "seen": len(batch)}
