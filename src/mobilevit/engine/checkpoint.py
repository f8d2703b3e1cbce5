"""Weights as safetensors; a resume file with the whole training state, written atomically."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..serialization import save_weights


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_resume(path: str | Path, state: dict[str, Any]) -> Path:
    """Write the resume file to a temporary name, then rename it over the old one."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load_resume(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        path = path / "resume.pt"
    if not path.is_file():
        raise FileNotFoundError(f"resume file {path} not found")
    # our own file: it holds RNG states (numpy arrays, tuples), so it is read with the full unpickler
    return torch.load(path, map_location="cpu", weights_only=False)


def save_model_weights(
    model: nn.Module,
    path: str | Path,
    arch: str,
    classes: list[str],
    overrides: dict[str, Any],
    extra: dict | None = None,
) -> Path:
    meta = {
        "format": "mobilevit",
        "arch": arch,
        "num_classes": len(classes),
        "classes": json.dumps(classes),
        "model_overrides": json.dumps(overrides),
        "channel_order": "RGB",
        **(extra or {}),
    }
    return save_weights(model.state_dict(), path, meta)


def start_run(cfg: Any) -> tuple[Any, Path]:
    """Common start of every training run: processes, threads, the run folder with the resolved
    config (rank 0), and a per-rank seed. Returns ``(dist_info, out_dir)``."""
    from . import dist as D
    from .config import save_config

    info = D.init_distributed(cfg.run.device)
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    out = Path(cfg.run.out_dir)
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
    torch.manual_seed(cfg.run.seed + info.rank)
    return info, out
