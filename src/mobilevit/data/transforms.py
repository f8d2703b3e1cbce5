"""Classification transforms of the paper's recipe (Section 4.1): RandomResizedCrop + flip; and
the stronger ones of the MobileViT v2 recipe (torchvision's RandAugment and RandomErasing on each
sample, MixUp / CutMix on each batch: `BatchMix`).

Each sample's randomness comes from its own seed (carried by the sampler's ``SampleKey``), so
augmentation is the same whatever the number of workers, and a resumed run sees exactly the
images an uninterrupted one would have.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2 as T

from .sampler import SampleKey, sample_rng

_INTERP = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC}


def supported_interpolation(name: str | None) -> str | None:
    """``name`` where these transforms have it (``bilinear``, ``bicubic``), else None (the caller's
    default): a checkpoint's config may name others (timm's, for instance, ``random``)."""
    return name if name in _INTERP else None


@dataclass
class TrainTransform:
    """RandomResizedCrop(scale) to the key's (h, w) + horizontal flip, to float RGB in [0, 1]."""

    scale: tuple[float, float] = (0.08, 1.0)
    hflip: float = 0.5
    interpolation: str = "bilinear"
    randaugment: bool = False  # torchvision's RandAugment (2 ops, magnitude 9), after the crop and flip
    random_erase: float = 0.0  # probability of torchvision's RandomErasing, on the float image

    # the composed transform of each crop size, built once (building draws nothing at random)
    _ops: dict[tuple[int, int], T.Compose] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __call__(self, image: Image.Image, key: SampleKey) -> torch.Tensor:
        size = (key.height, key.width)
        if size not in self._ops:
            self._ops[size] = self._compose(size)
        with sample_rng(key.seed):
            return self._ops[size](image)

    def _compose(self, size: tuple[int, int]) -> T.Compose:
        ops = [
            T.ToImage(),
            T.RandomResizedCrop(
                size, scale=self.scale, interpolation=_INTERP[self.interpolation], antialias=True
            ),
        ]
        if self.hflip > 0:
            ops.append(T.RandomHorizontalFlip(self.hflip))
        if self.randaugment:
            ops.append(T.RandAugment(interpolation=_INTERP[self.interpolation]))
        ops.append(T.ToDtype(torch.float32, scale=True))
        if self.random_erase > 0:
            ops.append(T.RandomErasing(self.random_erase))
        return T.Compose(ops)


@dataclass
class EvalTransform:
    """Resize the shorter side to ``resize`` then centre-crop ``crop`` (ml-cvnets: crop + 32)."""

    crop: int = 256
    resize: int | None = None
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        self._ops = T.Compose(
            [
                T.ToImage(),
                T.Resize(
                    self.resize or self.crop + 32, interpolation=_INTERP[self.interpolation], antialias=True
                ),
                T.CenterCrop(self.crop),
                T.ToDtype(torch.float32, scale=True),
            ]
        )

    def __call__(self, image: Image.Image, key: SampleKey | None = None) -> torch.Tensor:
        return self._ops(image)


class BatchMix:
    """MixUp (``mixup_alpha``) and / or CutMix (``cutmix_alpha``) of a batch, one of them chosen at
    random per batch when both are on (torchvision's ``MixUp`` / ``CutMix``). Targets become class
    probabilities [B, K]; draws come from the global RNG, which resume files carry."""

    def __init__(self, num_classes: int, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0) -> None:
        mixes = []
        if mixup_alpha > 0:
            mixes.append(T.MixUp(alpha=mixup_alpha, num_classes=num_classes))
        if cutmix_alpha > 0:
            mixes.append(T.CutMix(alpha=cutmix_alpha, num_classes=num_classes))
        self.mix = None if not mixes else mixes[0] if len(mixes) == 1 else T.RandomChoice(mixes)

    @property
    def enabled(self) -> bool:
        return self.mix is not None

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.mix is None:
            return images, targets
        return self.mix(images, targets)
