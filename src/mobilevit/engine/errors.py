"""The training engine's own error: the run cannot go on (data, numbers or setup)."""

from __future__ import annotations

from ..errors import MobileViTError


class TrainingError(MobileViTError, RuntimeError):
    """The run cannot go on: too many bad files or non-finite losses, data that does not fit the
    model, a run folder trained with another config."""
