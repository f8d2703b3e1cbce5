"""MkDocs hooks: the reference pages generated from the code at build time, and a check of the API pages.

Generated (never written by hand, so they cannot drift from the code):

- ``reference/models.md``: every registered model, its parameters and GMACs (from the registry);
- ``reference/weights.md``: every released checkpoint and its input convention (from ``WEIGHTS``);
- ``reference/config.md``: every training-config key, its type, default and comment (from the
  config dataclasses of each task in ``mobilevit.engine.TASKS``);
- ``reference/cli.md``: every ``mobilevit`` command's options (from the argparse parsers).

Checked: every public member of a module rendered on an API page (``::: module``) has a docstring;
one without is a warning, which ``mkdocs build --strict`` turns into a failed build.

The page builders are plain functions, so tests call them too (``tests/test_docs.py``).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import io
import json
import logging
import re
import tokenize
import typing
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("mkdocs.hooks.mobilevit")

GENERATED = {
    "reference/models.md": "models_page",
    "reference/weights.md": "weights_page",
    "reference/config.md": "config_page",
    "reference/cli.md": "cli_page",
}
GENERATED_NOTE = "<!-- generated at build time by scripts/docs_hooks.py; edit the code, not this page -->\n\n"


# ---- training config reference ------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigKey:
    key: str  # dotted, as written on the command line: optim.lr
    type: str
    default: Any
    comment: str


def _field_comments(cls: type) -> dict[str, str]:
    """The comments beside each field of ``cls`` and of its dataclass bases, and the comment lines just
    above it, by field name (a subclass's field without a comment keeps its base's)."""
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        source = inspect.getsource(klass)
        lines = source.splitlines()
        comments = {
            tok.start[0] - 1: tok.string.lstrip("#").strip()
            for tok in tokenize.generate_tokens(io.StringIO(source).readline)
            if tok.type == tokenize.COMMENT
        }
        own = set(klass.__dict__.get("__annotations__", {}))
        for i, line in enumerate(lines):
            m = re.match(r"    (\w+)\s*:", line)
            if not m or m.group(1) not in own:
                continue
            above, j = [], i - 1
            while j >= 0 and lines[j].strip().startswith("#"):
                above.insert(0, comments[j])
                j -= 1
            # the lines above (one paragraph: a group's heading or a long comment), then the field's own
            text = [t for t in (" ".join(above).rstrip(".;"), comments.get(i, "")) if t]
            if text:
                out[m.group(1)] = "; ".join(text)
    return out


def _type_name(hint: Any) -> str:
    if isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "")


def config_keys(cls: type, prefix: str = "") -> list[ConfigKey]:
    """Every key a training recipe of config class ``cls`` accepts, dotted, with default and comment."""
    instance = cls()
    hints = typing.get_type_hints(cls)
    comments = _field_comments(cls)
    keys: list[ConfigKey] = []
    for f in dataclasses.fields(cls):
        value = getattr(instance, f.name)
        if dataclasses.is_dataclass(value):
            sub = config_keys(type(value), f"{prefix}{f.name}.")
            # a section built with other defaults than its class's (run.out_dir per task)
            keys += [
                dataclasses.replace(k, default=_get(value, k.key[len(prefix) + len(f.name) + 1 :]))
                for k in sub
            ]
        else:
            keys.append(
                ConfigKey(prefix + f.name, _type_name(hints[f.name]), value, comments.get(f.name, ""))
            )
    return keys


def _get(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def config_page() -> str:
    """The training config reference: one table per task, every key with its default and comment."""
    from mobilevit.engine import TASKS

    parts = [
        "# Training config reference\n",
        "A recipe is YAML over these defaults, and any `section.key=value` on the command line "
        "overrides it (`mobilevit train --config R.yaml optim.lr=1e-3`). A key that is not listed here, "
        "or a value of the wrong type, is an error before any work. The `task` key picks the table. "
        "Recipes that ship with the package: `mobilevit train --config NAME.yaml` (they are listed "
        "in `configs/`).\n",
    ]
    for task, spec in TASKS.items():
        cls = spec.config_cls
        parts.append(f"## `task: {task}` ({cls.__name__})\n")
        section = None
        for k in config_keys(cls):
            head = k.key.split(".")[0] if "." in k.key else ""
            if head != section:
                section = head
                if head:
                    parts.append(f"\n### {head}\n")
                parts.append("| key | type | default | meaning |\n|---|---|---|---|")
            default = "`" + json.dumps(k.default).replace("|", "\\|") + "`"  # as written in YAML
            parts.append(f"| `{k.key}` | {_md(k.type)} | {default} | {_md(k.comment)} |")
        parts.append("")
    return GENERATED_NOTE + "\n".join(parts) + "\n"


# ---- CLI reference ------------------------------------------------------------------------------


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def cli_page() -> str:
    """Every ``mobilevit`` command with its ``--help``, from the parsers themselves."""
    import os

    from mobilevit.cli import build_parser

    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal; a fixed width for the page
    parser = build_parser()
    subs = _subcommands(parser)
    helps = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
    parts = [
        "# Command-line reference\n",
        "`mobilevit <command> --help` prints the same text. From a checkout set up by "
        "`scripts/setup.sh`, the program is `.venv/bin/mobilevit` (or `python -m mobilevit.cli`).\n",
        "| command | what it does |\n|---|---|",
    ]
    parts += [f"| [`{name}`](#{name}) | {_md(helps.get(name, ''))} |" for name in subs]
    parts.append("")
    for name, sub in subs.items():
        parts.append(f"## {name}\n")
        parts.append("```text\n" + sub.format_help().rstrip() + "\n```\n")
    return GENERATED_NOTE + "\n".join(parts)


# ---- models and weights -------------------------------------------------------------------------


def _family(name: str) -> str:
    for prefix, family in (("mobilevitv3", "v3"), ("mobilevitv2", "v2"), ("mobilevit", "v1")):
        if prefix in name:
            return family
    return "?"


def models_page() -> str:
    """Every registered model: parameters, and GMACs for the classifiers (FLOP counter at 256 px)."""
    import torch

    from mobilevit.bench import count_flops, count_params
    from mobilevit.models import create_model, list_models
    from mobilevit.weights import WEIGHTS

    torch.manual_seed(0)
    released: dict[str, list[str]] = {}
    for tag, spec in WEIGHTS.items():
        released.setdefault(spec.arch, []).append(tag)
    published = {  # ImageNet-1k-only weights at their 256 px crop (in22k and 384 px ones: weights page)
        s.arch: s.top1 for s in WEIGHTS.values() if s.top1 is not None and s.tag.endswith(".timm_in1k")
    }
    parts = [
        "# Models\n",
        "Every name `mobilevit.create_model` and `mobilevit models` accept, generated from the "
        "registry when this site was built. Parameters are counted on the model as built "
        "(1000 classes for the classifiers; 21 for DeepLabv3, 81 for SSDLite); GMACs by PyTorch's "
        "FLOP counter (attention included) at 256x256, batch 1. Measured latency is on the "
        "[benchmark pages](../measured.md). Weights: [released weights](weights.md).\n",
        "## Classifiers (ImageNet-1k heads)\n",
        "| model | family | params | GMACs @256 | ImageNet-1k top-1, released weights (256 px) | released weights |",
        "|---|---|---:|---:|---:|---|",
    ]
    names = list_models()
    heads = [n for n in names if n.startswith(("deeplabv3_", "ssdlite_"))]
    for name in (n for n in names if n not in heads):
        model = create_model(name).eval()
        gmacs = count_flops(model, (256, 256)) / 2e9
        top1 = f"{published[name]:.2f}" if name in published else ""
        tags = ", ".join(f"`{t}`" for t in sorted(released.get(name, [])))
        parts.append(
            f"| `{name}` | {_family(name)} | {count_params(model):,} | {gmacs:.3f} | {top1} | {tags} |"
        )
    parts += [
        "\n## Segmentation and detection\n",
        "DeepLabv3 (ASPP on the stride-16 map) and SSDLite (six detection levels) on each backbone; "
        "`backbone_weights` in their recipes loads an ImageNet classifier into the backbone.\n",
        "| model | head | backbone | params | released weights |",
        "|---|---|---|---:|---|",
    ]
    for name in heads:
        head, backbone = name.split("_", 1)
        tags = ", ".join(f"`{t}`" for t in sorted(released.get(name, [])))
        parts.append(f"| `{name}` | {head} | `{backbone}` | {count_params(create_model(name)):,} | {tags} |")
    return GENERATED_NOTE + "\n".join(parts) + "\n"


def weights_page() -> str:
    """Every released checkpoint ``pretrained=`` accepts, with its published score and input convention."""
    from mobilevit.weights import WEIGHTS

    parts = [
        "# Released weights\n",
        "Every tag `create_model(name, pretrained=TAG)` and `mobilevit weights` know, generated from "
        "`mobilevit.weights.WEIGHTS` when this site was built. A tag is read from the local cache, or "
        "downloaded once where downloads are allowed (`MOBILEVIT_OFFLINE=1` forbids them). The input "
        "convention is the preprocessing the weights were trained with; every model built here takes "
        "RGB (BGR files are rewritten on load, exactly). How to load, convert and publish: "
        "[weights guide](../guides/weights.md).\n",
        "| tag | model | format | published score | input: resize -> crop, interpolation | mean / std | "
        "file channels | license |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for tag, s in sorted(WEIGHTS.items()):
        score = (
            f"top-1 {s.top1:.2f}"
            if s.top1 is not None
            else f"mIoU {s.miou:.1f}"
            if s.miou is not None
            else f"box mAP {s.box_map:.1f}"
            if s.box_map is not None
            else ""
        )
        norm = (
            "none ([0, 1])"
            if s.mean == (0.0, 0.0, 0.0) and s.std == (1.0, 1.0, 1.0)
            else f"{s.mean} / {s.std}"
        )
        parts.append(
            f"| `{tag}` | `{s.arch}` | {s.source_format} | {score} | {s.resize_size} -> {s.crop_size}, "
            f"{s.interpolation} | {norm} | {s.channel_order} | {_md(s.license)} |"
        )
    return GENERATED_NOTE + "\n".join(parts) + "\n"


# ---- the API pages' check -----------------------------------------------------------------------


def undocumented(module_name: str) -> list[str]:
    """Public members of ``module_name`` (its ``__all__``) and their public methods with no docstring."""
    module = importlib.import_module(module_name)
    missing = []
    for name in getattr(module, "__all__", []):
        obj = getattr(module, name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        if not inspect.getdoc(obj):
            missing.append(f"{module_name}.{name}")
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if attr.startswith("_") or not inspect.isfunction(member):
                    continue
                if not inspect.getdoc(getattr(obj, attr)):
                    missing.append(f"{module_name}.{name}.{attr}")
    return missing


# ---- MkDocs hooks -------------------------------------------------------------------------------


def on_files(files: Any, config: Any) -> Any:
    """Add the generated reference pages to the site."""
    from mkdocs.structure.files import File

    for path, builder in GENERATED.items():
        files.append(File.generated(config, path, content=globals()[builder]()))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Warn (an error under ``--strict``) on an undocumented public member of a module an API page renders."""
    for module_name in re.findall(r"^::: ([\w.]+)", markdown, flags=re.M):
        for name in undocumented(module_name):
            log.warning("%s: %s is public and has no docstring", page.file.src_uri, name)
    return markdown
