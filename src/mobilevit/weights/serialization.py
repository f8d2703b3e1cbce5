"""Reading checkpoints of any supported kind and writing ours (safetensors + metadata)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
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
    Raises `CheckpointError` naming the path when the file cannot be read as a checkpoint.
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
    if not head.startswith((b"PK\x03\x04", b"\x80")):  # torch.save's zip, or a legacy pickle
        raise CheckpointError(
            f"{path}: not a checkpoint ({_kind_of(head)}); expected a .safetensors file, a PyTorch "
            ".pt / .pth file or a save_pretrained folder"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # the unpickler raises many types on garbage; all mean "not a checkpoint"
        found = refused_global(e)
        if found is not None:  # a clear refusal, not torch's advice to load it with the full unpickler
            raise CheckpointError(
                f"{path}: holds objects ({found}) other than tensors and plain containers, which are not "
                "loaded here because building them can run code; re-save it as a state dict "
                "(torch.save(model.state_dict(), ...)) or as safetensors"
            ) from e
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({last_line(e)})") from e
    return _unwrap(obj, path), {}


def refused_global(e: Exception) -> str | None:
    """The global (e.g. ``io.open``) a ``weights_only`` load refused to build, or None when the
    error means the file is simply not a readable pickle."""
    found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
    return found.group(1) if found else None


def last_line(e: Exception) -> str:
    """The informative last line of a load error (torch's ends in pages of advice)."""
    lines = [
        x.strip() for x in str(e).splitlines() if x.strip() and not x.startswith("Check the documentation")
    ]
    return lines[-1] if lines else type(e).__name__


def _kind_of(head: bytes) -> str:
    """What a file's first bytes say it is, for messages."""
    for magic, kind in (
        (b"\xff\xd8\xff", "a JPEG image"),
        (b"\x89PNG", "a PNG image"),
        (b"GIF8", "a GIF image"),
        (b"RIFF", "a RIFF file (WebP image?)"),
        (b"\x08", "an ONNX model?"),
    ):
        if head.startswith(magic):
            return kind
    return "unknown format"


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
    """Write ``state_dict`` as safetensors; metadata values are JSON-encoded when not strings.

    The tensors are detached, made contiguous and moved to the CPU; the file is written next to
    ``path`` (``.tmp``) and renamed over it, so a failed write leaves no half file.

    Args:
        state_dict: the tensors to write.
        path: the file to write; its parent folders are created.
        metadata: the safetensors header metadata.

    Returns:
        ``path``, as a `Path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


# --------------------------------------------------------------------------- the weights schema
WEIGHTS_FORMAT = "mobilevit"
_CORE_KEYS = ("format", "task", "arch", "num_classes", "classes", "model_overrides", "channel_order")
_INT_EXTRAS = ("img_size", "eval_resize", "eval_size", "epoch")


@dataclass
class WeightsMeta:
    """What a weights file of ours records besides its tensors (the safetensors header metadata).

    ``extra`` holds the per-task and provenance fields: ``img_size`` / ``eval_resize``
    (classification: how training evaluated), ``eval_size`` (segmentation), ``ssd`` and
    ``cat_ids`` (detection), ``weights`` (raw or ema), ``epoch``, ``val_<metric>``,
    ``converted_from`` and ``source_file`` (conversions).
    """

    arch: str
    task: str = "classification"
    num_classes: int | None = None
    classes: list[str] | None = None
    model_overrides: dict[str, Any] = field(default_factory=dict)
    channel_order: str = "RGB"
    format: str = WEIGHTS_FORMAT
    extra: dict[str, Any] = field(default_factory=dict)

    def to_metadata(self) -> dict[str, str]:
        """The header metadata: strings as they are, everything else JSON-encoded."""
        core = {
            "format": self.format,
            "task": self.task,
            "arch": self.arch,
            "num_classes": self.num_classes,
            "classes": self.classes,
            "model_overrides": self.model_overrides,
            "channel_order": self.channel_order,
        }
        clash = set(self.extra) & set(core)
        if clash:
            raise ValueError(f"weights metadata: extra fields {sorted(clash)} would overwrite the schema's")
        out = {k: v for k, v in {**core, **self.extra}.items() if v is not None}
        return {k: v if isinstance(v, str) else json.dumps(v) for k, v in out.items()}

    @classmethod
    def from_metadata(cls, meta: Mapping[str, str], where: str = "weights file") -> WeightsMeta | None:
        """Parse header metadata; None when it is not ours (no ``format: mobilevit``, no ``arch``).

        Files from every earlier version of this package parse: the schema only names what they
        already wrote.
        """
        if meta.get("format") != WEIGHTS_FORMAT or not meta.get("arch"):
            return None
        try:
            num = meta.get("num_classes")
            classes = json.loads(meta["classes"]) if "classes" in meta else None
            overrides = json.loads(meta.get("model_overrides", "{}"))
            extra = {k: _json_or_str(v) for k, v in meta.items() if k not in _CORE_KEYS}
            for k in _INT_EXTRAS:
                if k in extra:
                    extra[k] = int(extra[k])
            return cls(
                arch=meta["arch"],
                task=meta.get("task", "classification"),
                num_classes=int(num) if num is not None else None,
                classes=list(classes) if classes is not None else None,
                model_overrides=dict(overrides),
                channel_order=meta.get("channel_order", "RGB"),
                extra=extra,
            )
        except (ValueError, TypeError) as e:
            raise CheckpointError(f"{where}: damaged mobilevit metadata ({e})") from e


def _json_or_str(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def write_weights(state_dict: Mapping[str, torch.Tensor], path: str | Path, meta: WeightsMeta) -> Path:
    """The one writer of weights files: safetensors with `WeightsMeta` in the header.

    Args:
        state_dict: the tensors to write, under our keys.
        path: the file to write (parents created, replaced atomically; see `save_weights`).
        meta: what the header records (`WeightsMeta.to_metadata`).

    Returns:
        ``path``, as a `Path`.
    """
    return save_weights(state_dict, path, meta.to_metadata())


def read_weights_meta(path: str | Path) -> WeightsMeta | None:
    """The `WeightsMeta` of a weights file (None for foreign checkpoints), tensors unread."""
    return WeightsMeta.from_metadata(read_metadata(path), where=str(path))
