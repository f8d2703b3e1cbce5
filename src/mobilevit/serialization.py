"""Reading checkpoints of any supported kind and writing ours (safetensors + metadata)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

# Keys under which training frameworks commonly nest the state dict, tried in this order.
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "state_dict_ema", "model_ema")
_FOLDER_FILES = ("model.safetensors", "pytorch_model.bin", "model.pt", "weights.safetensors")


class CheckpointError(ValueError):
    """A file that is not a readable checkpoint (truncated, wrong type, empty)."""


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a state dict from a safetensors file, a torch pickle or a ``save_pretrained`` folder.

    Returns ``(state_dict, metadata)``; metadata is the safetensors header metadata (empty for
    other formats). Torch pickles are read with ``weights_only=True``: no code is executed.
    Raises :class:`CheckpointError` naming the path when the file cannot be read as a checkpoint.
    """
    path = Path(path)
    if path.is_dir():
        for name in _FOLDER_FILES:
            if (path / name).is_file():
                return read_state_dict(path / name)
        raise CheckpointError(f"{path}: folder holds none of {', '.join(_FOLDER_FILES)}")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: checkpoint file is empty")
    with open(path, "rb") as fh:
        head = fh.read(8)
    if path.suffix == ".safetensors" or _looks_like_safetensors(head):
        meta = _safetensors_metadata(path)
        try:
            return dict(load_file(str(path))), meta
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from e
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # the unpickler raises many types on garbage; all mean "not a checkpoint"
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: {e})") from e
    return _unwrap(obj, path), {}


def read_metadata(path: str | Path) -> dict[str, str]:
    """The safetensors header metadata of a weights file, without reading its tensors.

    ``{}`` for torch pickles and folders without a safetensors file (they carry none).
    """
    path = Path(path)
    if path.is_dir():
        path = path / "model.safetensors"
    if path.suffix != ".safetensors" or not path.is_file():
        return {}
    return _safetensors_metadata(path)


def _safetensors_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from e


def _looks_like_safetensors(head: bytes) -> bool:
    # 8-byte little-endian header length followed by '{'; the length is small and plausible.
    if len(head) < 8:
        return False
    n = int.from_bytes(head, "little")
    return 2 <= n < 100_000_000 and not head.startswith(b"PK") and head[:2] != b"\x80\x02"


def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            inner = obj.get(key)
            if (
                isinstance(inner, Mapping)
                and inner
                and all(isinstance(v, torch.Tensor) for v in inner.values())
            ):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{path}: holds {type(obj).__name__}, not a state dict of tensors")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{path}: holds no tensors")
    if all(k.startswith("module.") for k in tensors):  # DistributedDataParallel wrapper
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    return tensors


def save_weights(
    state_dict: Mapping[str, torch.Tensor], path: str | Path, metadata: Mapping[str, Any]
) -> Path:
    """Write ``state_dict`` as safetensors; metadata values are JSON-encoded when not strings."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)
    return path
