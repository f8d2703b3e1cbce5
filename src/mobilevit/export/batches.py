"""Fixed-size float batches for graphs compiled or exported at one batch size (both int8 paths),
from images kept as float or, four times smaller, as 8-bit pixel values."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def to_pixels(images: np.ndarray) -> np.ndarray:
    """Float images in [0, 1] that hold 8-bit values (``k / 255``: what an 8-bit image through
    torchvision's ``ToDtype(float32, scale=True)`` gives) as those ``uint8`` values: `to_float`
    gives the same floats back, bit for bit."""
    return np.rint(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)


def to_float(images: np.ndarray) -> np.ndarray:
    """``uint8`` pixel values as float32 in [0, 1], computed as torchvision's
    ``ToDtype(float32, scale=True)`` does (times float32 ``1 / 255``, which differs from a division
    in the last bit for some values); float images as float32."""
    if images.dtype == np.uint8:
        return images.astype(np.float32) * np.float32(1.0 / 255)
    return images.astype(np.float32, copy=False)


def padded_batches(images: np.ndarray, batch: int) -> Iterator[tuple[np.ndarray, int]]:
    """``images`` cut into float32 batches of exactly ``batch`` (the last padded by repeating its
    last image), each with the number of real images in it; one batch at a time, so ``uint8``
    images are turned into floats a batch at a time (`to_float`)."""
    for start in range(0, len(images), batch):
        chunk = to_float(images[start : start + batch])
        n = len(chunk)
        if n < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - n, axis=0)])
        yield np.ascontiguousarray(chunk), n
