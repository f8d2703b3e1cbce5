"""What every export refuses or fails with: `ExportError`, and the size check they share."""

from __future__ import annotations

from torch import nn

from ..errors import MobileViTError


class ExportError(MobileViTError, RuntimeError):
    """An export that cannot be made, or that failed its check (the file is deleted)."""


def check_size(model: nn.Module, img_size: tuple[int, int]) -> None:
    """An export size the model can take: >= 32 px, and a detector's own size (its anchors depend on it)."""
    if len(img_size) != 2 or min(img_size) < 32:
        raise ExportError(f"image size must be two ints >= 32 (the network's output stride), got {img_size}")
    built = getattr(getattr(model, "ssd_config", None), "image_size", None)
    if built is not None and tuple(img_size) != tuple(built):
        raise ExportError(
            f"this detector was built for {built[0]}x{built[1]} inputs (its anchors depend on the size); "
            f"export it at that size, not {img_size[0]}x{img_size[1]}"
        )
