"""Multi-scale feature maps the way timm returns them: ``create_model(name, features_only=True)``.

`FeatureMaps` runs a MobileViT network up to its pre-pool features and returns a list of
maps, one per selected level, with a `FeatureInfoList` describing them
(``channels()``, ``reduction()``, ``module_name()``), as timm's ``features_only`` models do; FPNs
and the detection / segmentation codebases written against timm (torchvision's
``FeaturePyramidNetwork`` / ``BackboneWithFPN``, mmdet, detectron2 wrappers) take it as they take
timm's. The five levels are timm's for MobileViT: the outputs of stages L1..L4 (strides 2, 4, 8,
16) and, at stride 32, the network's pre-pool features: for v1 (and v3 on v1) the 1x1 expansion
conv after L5 (Section 3 of the paper; 640 channels for S), for v2 (and v3 on v2) the L5 output.
The parameter names are the classifier's, so classifier weights load into it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from .backbone import BackboneBase, FeatureInfo


class FeatureInfoList:
    """timm's ``feature_info`` interface over the selected levels: ``channels()``,
    ``reduction()``, ``module_name()`` (all levels, or ``idx`` of them), ``out_indices``, and
    ``info[i]`` / iteration (each a `FeatureInfo`, readable by timm's keys)."""

    def __init__(self, levels: Sequence[FeatureInfo], out_indices: Sequence[int]) -> None:
        self.levels = list(levels)
        self.out_indices = tuple(out_indices)

    def _get(self, key: str, idx: int | Sequence[int] | None) -> Any:
        picked = [lv[key] for lv in self.levels]
        if idx is None:
            return picked
        return picked[idx] if isinstance(idx, int) else [picked[i] for i in idx]

    def channels(self, idx: int | Sequence[int] | None = None) -> Any:
        """Channels of every selected level (or of ``idx``)."""
        return self._get("num_chs", idx)

    def reduction(self, idx: int | Sequence[int] | None = None) -> Any:
        """Stride w.r.t. the input of every selected level (or of ``idx``)."""
        return self._get("reduction", idx)

    def module_name(self, idx: int | Sequence[int] | None = None) -> Any:
        """The module that makes each selected level (or ``idx``)."""
        return self._get("module", idx)

    def get_dicts(self) -> list[dict[str, Any]]:
        """timm's form: one dict per level (``num_chs``, ``reduction``, ``module``)."""
        return [
            {"num_chs": lv.channels, "reduction": lv.reduction, "module": lv.module} for lv in self.levels
        ]

    def __getitem__(self, i: int) -> FeatureInfo:
        return self.levels[i]

    def __len__(self) -> int:
        return len(self.levels)

    def __iter__(self) -> Any:
        return iter(self.levels)


class FeatureMaps(nn.Module):
    """A MobileViT network that returns the maps of the levels in ``out_indices`` (0..4), as a list.

    Built by ``create_model(name, features_only=True, out_indices=...)`` from a classifier (its
    head dropped); ``output_stride`` 16 or 8 dilates the last stages as for the heads.
    """

    def __init__(self, model: BackboneBase, out_indices: Sequence[int] = (0, 1, 2, 3, 4)) -> None:
        super().__init__()
        self.stem = model.stem
        self.stages = model.stages
        self.conv_exp = getattr(model, "conv_exp", None)  # v1 / v3-on-v1: after L5, the stride-32 level
        # level i: the output of stage L(i+1); the last level: the pre-pool features
        levels = list(model.feature_info)
        if self.conv_exp is not None:
            levels[-1] = replace(levels[-1], channels=self.conv_exp.conv.out_channels, module="conv_exp")
        n = len(levels)
        if not out_indices or any(not -n <= int(i) < n for i in out_indices):
            raise ValueError(f"out_indices must pick levels among 0..{n - 1}, got {tuple(out_indices)}")
        self.out_indices = tuple(int(i) % n for i in out_indices)
        self.feature_info = FeatureInfoList([levels[i] for i in self.out_indices], self.out_indices)
        self.config = model.config
        self.pretrained_cfg = model.pretrained_cfg

    # the stage-level contract of the backbones (they read self.config, self.stem, self.stages only)
    check_input = BackboneBase.check_input
    forward_stages = BackboneBase.forward_stages

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        self.check_input(x)
        last = max(self.out_indices)
        outs = []
        x = self.stem(x)
        for i, stage in enumerate(self.stages[: last + 1]):
            x = stage(x)
            if i == len(self.stages) - 1 and self.conv_exp is not None:
                x = self.conv_exp(x)  # [B, C5, H/32, W/32] -> [B, C_exp, H/32, W/32]
            outs.append(x)
        return [outs[i] for i in self.out_indices]


def feature_maps(model: nn.Module, out_indices: Sequence[int] | None = None) -> FeatureMaps:
    """``model`` (a MobileViT classifier of any family) as `FeatureMaps`."""
    if not isinstance(model, BackboneBase) or model.features_only:
        raise ValueError(f"features_only=True takes a MobileViT classifier, got {type(model).__name__}")
    return FeatureMaps(model, (0, 1, 2, 3, 4) if out_indices is None else out_indices)
