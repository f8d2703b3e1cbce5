"""Task heads attached to a MobileViT backbone by composition (never by surgery), each with its
builders and registered names: DeepLabv3 (segmentation) and SSDLite (detection)."""

from .deeplabv3 import ASPP, DeepLabV3
from .ssdlite import SSDLite, SSDLiteConfig

__all__ = ["ASPP", "DeepLabV3", "SSDLite", "SSDLiteConfig"]
