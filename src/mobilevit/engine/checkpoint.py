"""Resume files that load without running code, written so that a crash never leaves a broken one.

A resume file is a ``torch.save`` of plain containers (dicts, lists, tuples, strings, numbers) and
tensors only: model, optimizer, scheduler and EMA state dicts, the loop's counters, the resolved
config, and the RNG states of torch, Python and NumPy stored as tensors. ``torch.load`` reads it
with ``weights_only=True``, so a file someone hands you cannot execute anything. It is written to
a temporary file in the same folder, flushed to disk, then renamed over the old one: a process
killed at any point leaves either the previous file or the new one.
"""

from __future__ import annotations

import os
import pickle
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..weights.serialization import last_line, refused_global

RESUME_FORMAT = "mobilevit-resume"
RESUME_VERSION = 1
RESUME_NAME = "resume.pt"


class ResumeError(ValueError):
    """A resume file that is missing, damaged, not ours, or would need code to be read."""


def rng_state() -> dict[str, Any]:
    """The RNG states of torch (CPU and CUDA), Python and NumPy, as tensors and plain values."""
    version, mt, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": {"version": version, "mt": torch.tensor(mt, dtype=torch.int64), "gauss": gauss},
        "numpy": {
            "name": str(name),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the RNG states `rng_state` saved (torch CPU and CUDA, Python, NumPy)."""
    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["mt"].tolist()), py["gauss"]))
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["name"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_resume(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` (plain containers and tensors) atomically: temp file, fsync, rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": RESUME_FORMAT, "version": RESUME_VERSION, **state}
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a writer killed mid-write
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:  # make the rename itself durable
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def resume_path(path: str | Path) -> Path:
    """``path`` itself, or ``path/resume.pt`` for a run folder."""
    path = Path(path)
    return path / RESUME_NAME if path.is_dir() else path


def load_resume(path: str | Path) -> dict[str, Any]:
    """Read a resume file with ``weights_only=True``: nothing in it can run code.

    Raises `ResumeError` naming the path for a missing or damaged file, a pickle that
    holds anything but tensors and plain containers, or a file that is not a resume file of ours.
    """
    path = resume_path(path)
    if not path.is_file():
        raise ResumeError(f"resume file {path} not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = refused_global(e)
        if found is None:  # not a pickle of ours at all (garbage, truncated)
            raise ResumeError(f"{path}: not a readable resume file ({last_line(e)})") from e
        raise ResumeError(
            f"{path}: refused, it holds objects ({found}) that only the full unpickler can build, "
            "and building them could run code. Resume files written by mobilevit hold tensors and plain "
            "values only (older ones, from before this check, cannot be resumed: start the run again)"
        ) from e
    except Exception as e:  # truncated or not a torch file: many exception types, one meaning
        raise ResumeError(f"{path}: not a readable resume file ({type(e).__name__}: {e})") from e
    if not isinstance(state, dict) or state.get("format") != RESUME_FORMAT:
        raise ResumeError(f"{path}: not a mobilevit resume file (no '{RESUME_FORMAT}' marker)")
    if state.get("version") != RESUME_VERSION:
        raise ResumeError(
            f"{path}: resume file version {state.get('version')}, this mobilevit reads version {RESUME_VERSION}"
        )
    return state
