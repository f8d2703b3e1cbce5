"""Reading one image file as 8-bit RGB, the way every dataset and ``predict`` here reads it.

Pillow's ``convert("RGB")`` clips 16-bit greyscale (``I;16``, ``I``) to 255, so a 16-bit PNG
would come out almost white; such images are scaled to 8 bits first. A file Pillow cannot read,
or one larger than its decompression-bomb limit, raises one of `IMAGE_READ_ERRORS`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

# What reading a bad file raises: truncated / corrupt / not an image / too many pixels
IMAGE_READ_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    UnidentifiedImageError,
    ValueError,
    SyntaxError,
    Image.DecompressionBombError,
)

_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit RGB: 16-bit greyscale scaled by 255 / 65535, everything else through
    Pillow's ``convert``. Float images (mode ``F``) and 32-bit integer ones beyond 16-bit values
    have no agreed range: a `ValueError` says so."""
    if image.mode in _SIXTEEN_BIT or image.mode == "I":
        values = np.asarray(image, dtype=np.int64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ValueError(f"{image.mode} image with values outside 0-65535: convert it to 8-bit first")
        if image.mode == "I" and (not values.size or values.max() <= 255):
            scaled = values  # an 8-bit image stored as 32-bit integers
        else:
            scaled = (values * 255 + 32767) // 65535  # rounded
        return Image.fromarray(scaled.astype(np.uint8)).convert("RGB")
    if image.mode == "F":
        raise ValueError("32-bit float image (mode F) has no agreed pixel range: convert it to 8-bit first")
    return image.convert("RGB")


def read_rgb(path: str | Path) -> Image.Image:
    """The image at ``path`` as 8-bit RGB (`to_rgb`); raises one of `IMAGE_READ_ERRORS`."""
    with Image.open(path) as im:
        im.load()
        return to_rgb(im)


__all__ = ["IMAGE_READ_ERRORS", "read_rgb", "to_rgb"]
