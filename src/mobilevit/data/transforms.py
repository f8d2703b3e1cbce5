"""Classification transforms of the paper's recipe (Section 4.1): RandomResizedCrop + flip.

Each sample's randomness comes from its own seed (carried by the sampler's ``SampleKey``), so
augmentation is the same whatever the number of workers, and a resumed run sees exactly the
images an uninterrupted one would have.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2 as T

from .sampler import SampleKey

_INTERP = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC}


@dataclass
class TrainTransform:
    """RandomResizedCrop(scale) to the key's (h, w) + horizontal flip, to float RGB in [0, 1]."""

    scale: tuple[float, float] = (0.08, 1.0)
    hflip: float = 0.5
    interpolation: str = "bilinear"

    def __call__(self, image: Image.Image, key: SampleKey) -> torch.Tensor:
        ops = [
            T.ToImage(),
            T.RandomResizedCrop(
                (key.height, key.width),
                scale=self.scale,
                interpolation=_INTERP[self.interpolation],
                antialias=True,
            ),
        ]
        if self.hflip > 0:
            ops.append(T.RandomHorizontalFlip(self.hflip))
        ops.append(T.ToDtype(torch.float32, scale=True))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(key.seed)
            return T.Compose(ops)(image)


@dataclass
class EvalTransform:
    """Resize the shorter side to ``resize`` then centre-crop ``crop`` (ml-cvnets: crop + 32)."""

    crop: int = 256
    resize: int | None = None
    interpolation: str = "bilinear"

    def __call__(self, image: Image.Image, key: SampleKey | None = None) -> torch.Tensor:
        resize = self.resize or self.crop + 32
        ops = T.Compose(
            [
                T.ToImage(),
                T.Resize(resize, interpolation=_INTERP[self.interpolation], antialias=True),
                T.CenterCrop(self.crop),
                T.ToDtype(torch.float32, scale=True),
            ]
        )
        return ops(image)
