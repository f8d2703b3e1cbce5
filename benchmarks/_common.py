"""Shared bits of the benchmark scripts: the machine header and writing docs tables."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


def write_doc(name: str, title: str, body: str, command: str) -> Path:
    from mobilevit.bench import machine_info

    info = machine_info()
    DOCS.mkdir(exist_ok=True)
    text = (
        f"# {title}\n\n"
        f"Machine: {info['cpu']} ({', '.join(info['extensions']) or 'no AVX'}), {info['threads']} torch threads; "
        f"torch {info['torch']}, Python {info['python']}.\n\n"
        f"Command: `{command}`\n\n{body}\n"
    )
    path = DOCS / name
    path.write_text(text)
    return path


def print_json_last(figures: dict[str, Any]) -> None:
    sys.stdout.flush()
    print(json.dumps(figures), flush=True)
