"""``hf-hub:ORG/REPO[@REVISION]`` names: Hugging Face Hub repositories as weights sources.

Repos are fetched with ``huggingface_hub`` (its cache, revisions, ``HF_HUB_OFFLINE`` and tokens
for private repos), and may hold this package's layout (``config.json`` with ``"library_name":
"mobilevit"`` and our ``model.safetensors``, what `mobilevit.publish.save_pretrained` writes),
timm's (``config.json`` with ``"architecture"``) or transformers' (``"model_type": "mobilevit"`` or
``"mobilevitv2"``). `fetch_repo` says which, and which of our architectures it is.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MobileViTError
from .convert.transformers import arch_from_config

HF_HUB_PREFIX = "hf-hub:"
# what a repo's weights may be in, best first; the rest of a repo (images, logs) is not fetched
_PATTERNS = ["config.json", "preprocessor_config.json", "README.md", "*.safetensors", "pytorch_model.bin"]


class HubError(MobileViTError):
    """A Hub repo that cannot be fetched or holds no MobileViT weights."""


@dataclass
class HubRepo:
    """A fetched repo: where its files are, which layout they use and what they hold."""

    repo_id: str
    revision: str | None
    folder: Path
    layout: str  # mobilevit | timm | transformers
    arch: str | None  # one of our registered names, when the config says which
    num_classes: int | None = None
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def weights(self) -> Path:
        """What ``load_model`` / ``read_state_dict`` take: the weights file, or the transformers folder."""
        if self.layout == "transformers":
            return self.folder
        safetensors = self.folder / "model.safetensors"
        legacy = self.folder / "pytorch_model.bin"  # older timm uploads
        return legacy if not safetensors.is_file() and legacy.is_file() else safetensors


def is_hub_name(name: object) -> bool:
    """Whether ``name`` is a string starting with ``hf-hub:`` (not checked further: `parse_hub_name`)."""
    return isinstance(name, str) and name.startswith(HF_HUB_PREFIX)


def parse_hub_name(name: str) -> tuple[str, str | None]:
    """``hf-hub:ORG/REPO@REV`` -> (``ORG/REPO``, ``REV``)."""
    repo = name.removeprefix(HF_HUB_PREFIX)
    repo, _, revision = repo.partition("@")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise HubError(f"{name!r} is not a Hub name: write hf-hub:ORG/REPO (or hf-hub:ORG/REPO@REVISION)")
    return repo, revision or None


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def download(repo_id: str, revision: str | None = None, token: str | None = None) -> Path:
    """The repo's weights and configs in huggingface_hub's cache (fetched unless cached offline).

    Only the configs, README and weights files are fetched, not the rest of the repo.

    Args:
        repo_id: ``ORG/REPO``.
        revision: a branch, tag or commit; ``None``: the default branch.
        token: a Hub token for private repos; ``None``: huggingface_hub's own (``HF_TOKEN``, login).

    Returns:
        The snapshot's folder in the cache.

    Raises:
        HubError: huggingface_hub missing, the repo or revision not found, not cached while
            ``HF_HUB_OFFLINE`` is set, or any other Hub HTTP error.
    """
    try:
        import huggingface_hub as hh
        from huggingface_hub import errors as hh_errors
    except ImportError as e:  # a core dependency; only a broken install lacks it
        raise HubError("hf-hub: names need huggingface_hub: pip install huggingface_hub") from e
    where = f"{repo_id}" + (f"@{revision}" if revision else "")
    try:
        return Path(hh.snapshot_download(repo_id, revision=revision, allow_patterns=_PATTERNS, token=token))
    except hh_errors.LocalEntryNotFoundError as e:
        if _offline():
            raise HubError(
                f"hf-hub:{where} is not in the Hugging Face cache ({hh.constants.HF_HUB_CACHE}) and "
                "HF_HUB_OFFLINE=1 forbids downloading it; download it once online, or unset HF_HUB_OFFLINE"
            ) from e
        raise HubError(f"hf-hub:{where} could not be fetched and is not cached: {e}") from e
    except hh_errors.RepositoryNotFoundError as e:
        raise HubError(
            f"hf-hub:{where}: no such repo, or it is private (log in with `hf auth login` or set HF_TOKEN)"
        ) from e
    except hh_errors.RevisionNotFoundError as e:
        raise HubError(f"hf-hub:{where}: the repo has no revision {revision!r}") from e
    except hh_errors.HfHubHTTPError as e:
        raise HubError(f"hf-hub:{where}: the Hub answered {e}") from e


def describe(folder: Path, repo_id: str = "", revision: str | None = None) -> HubRepo:
    """Which layout a repo folder uses and which of our architectures it holds.

    Args:
        folder: the repo's files (a downloaded snapshot or any local folder); read from its
            ``config.json``.
        repo_id: ``ORG/REPO``, for the result and error messages; empty: a local folder.
        revision: the revision it was fetched at, recorded in the result.

    Returns:
        The `HubRepo`: layout ``mobilevit``, ``timm`` or ``transformers``, architecture and class
        count when the config says them.

    Raises:
        HubError: no or unreadable ``config.json``, a non-MobileViT model, or a missing weights file.
    """
    name = f"hf-hub:{repo_id}" if repo_id else str(folder)
    cfg_file = folder / "config.json"
    if not cfg_file.is_file():
        raise HubError(f"{name} has no config.json: not a model repo this package can read")
    try:
        config = json.loads(cfg_file.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise HubError(f"{name}: config.json is not readable JSON ({e})") from e
    if not isinstance(config, dict):
        raise HubError(f"{name}: config.json holds no object")
    repo = HubRepo(repo_id, revision, folder, "mobilevit", None, config=config)
    if config.get("library_name") == "mobilevit":
        repo.arch, repo.num_classes = config.get("arch"), config.get("num_classes")
    elif "architecture" in config:  # timm's hub layout
        repo.layout, repo.arch, repo.num_classes = "timm", config["architecture"], config.get("num_classes")
        if not str(repo.arch).startswith("mobilevit"):
            raise HubError(f"{name} holds timm's {repo.arch}, not a MobileViT")
    elif "model_type" in config:
        if config["model_type"] not in ("mobilevit", "mobilevitv2"):
            raise HubError(f"{name} holds a transformers {config['model_type']!r} model, not a MobileViT")
        repo.layout, repo.arch = "transformers", arch_from_config(config)
        labels = config.get("id2label")
        repo.num_classes = len(labels) if isinstance(labels, dict) else None
    else:
        raise HubError(f"{name}: config.json names no model (no library_name, architecture or model_type)")
    weights = repo.weights if repo.layout != "transformers" else None
    if weights is not None and not weights.is_file():
        raise HubError(f"{name} has no {weights.name}")
    return repo


def fetch_repo(name: str, token: str | None = None) -> HubRepo:
    """Fetch (or find cached) an ``hf-hub:`` repo and describe it."""
    repo_id, revision = parse_hub_name(name)
    return describe(download(repo_id, revision, token), repo_id, revision)
