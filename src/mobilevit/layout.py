"""Memory-layout choices shared by training and inference (imports nothing of this package)."""

from __future__ import annotations

import torch


def channels_last_pays() -> bool:
    """Whether channels-last memory is the faster default for CPU convolutions here.

    True where PyTorch runs CPU convolutions through oneDNN, whose channels-last kernels skip the
    layout reorders its NCHW path makes, forward and backward (where that was measured, and by how
    much: docs/measured_defaults.md, ``benchmarks/latency.py``, ``benchmarks/train_throughput.py``).
    The training engine (``run.channels_last=auto``) and ``optimize_for_inference`` both read it.
    """
    return torch.backends.mkldnn.is_available()
