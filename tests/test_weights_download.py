"""Released weights on Apple's server: the download is checked against the spec's sha256 (the
transfer itself is replaced by a local write; nothing here reaches the network)."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest

from mobilevit.weights import specs

TAG = "mobilevit_xxs.cvnets_in1k"  # an Apple-hosted entry (docs-assets.developer.apple.com)


def _write(payload: bytes):
    def download(url: str, dst: str, progress: bool = True) -> None:
        Path(dst).write_bytes(payload)

    return download


def test_an_apple_download_is_kept_only_when_its_sha256_matches(tmp_path, monkeypatch):
    assert specs.WEIGHTS[TAG].url.startswith("https://docs-assets.developer.apple.com/")
    monkeypatch.setenv("MOBILEVIT_HOME", str(tmp_path))
    payload = b"a checkpoint's bytes"
    good = dataclasses.replace(specs.WEIGHTS[TAG], sha256=hashlib.sha256(payload).hexdigest())
    monkeypatch.setitem(specs.WEIGHTS, TAG, good)
    monkeypatch.setattr("torch.hub.download_url_to_file", _write(payload))
    path = specs.resolve_weights(TAG, download=True)
    assert path == tmp_path / good.filename and path.read_bytes() == payload
    path.unlink()

    monkeypatch.setitem(specs.WEIGHTS, TAG, dataclasses.replace(good, sha256="0" * 64))
    with pytest.raises(ValueError, match="does not match the spec's 0000"):
        specs.resolve_weights(TAG, download=True)
    assert list(tmp_path.iterdir()) == []  # neither the file nor its .part is left


def test_offline_a_missing_apple_file_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("MOBILEVIT_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="downloads are off .* Fetch https://docs-assets"):
        specs.resolve_weights(TAG, download=False)


def test_an_apple_download_without_a_recorded_sha256_logs_its_digest(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("MOBILEVIT_HOME", str(tmp_path))
    payload = b"unrecorded bytes"
    monkeypatch.setitem(specs.WEIGHTS, TAG, dataclasses.replace(specs.WEIGHTS[TAG], sha256=None))
    monkeypatch.setattr("torch.hub.download_url_to_file", _write(payload))
    with caplog.at_level("WARNING", logger=specs.__name__):
        path = specs.resolve_weights(TAG, download=True)
    assert path.read_bytes() == payload
    assert hashlib.sha256(payload).hexdigest() in caplog.text and "no sha256 recorded" in caplog.text
