"""Fixed-size batches for graphs compiled or exported at one batch size (both int8 paths)."""

from __future__ import annotations

import numpy as np


def padded_batches(images: np.ndarray, batch: int) -> list[tuple[np.ndarray, int]]:
    """``images`` cut into batches of exactly ``batch`` (the last padded by repeating its last image),
    each with the number of real images in it."""
    out = []
    for start in range(0, len(images), batch):
        chunk = images[start : start + batch]
        n = len(chunk)
        if n < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - n, axis=0)])
        out.append((np.ascontiguousarray(chunk), n))
    return out
