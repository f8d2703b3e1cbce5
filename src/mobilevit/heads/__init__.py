"""Task heads attached to a MobileViT backbone by composition (never by surgery)."""

from .deeplabv3 import ASPP, DeepLabV3

__all__ = ["ASPP", "DeepLabV3"]
