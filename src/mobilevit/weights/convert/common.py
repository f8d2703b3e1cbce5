"""Shared machinery of the key converters: ordered regex rules and clear failures."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

Rule = tuple[str, Callable[[re.Match[str]], str] | str]


class ConversionError(ValueError):
    """A source state dict that does not fit the expected layout."""


@dataclass(frozen=True)
class RuleSet:
    """Ordered (regex, replacement) rules; the first full match of a key wins."""

    source: str
    rules: tuple[Rule, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "_compiled", tuple((re.compile(p), r) for p, r in self.rules))

    def rename(self, key: str) -> str | None:
        """``key`` renamed by the first rule whose pattern fully matches it; ``None`` if none does."""
        for pattern, repl in self._compiled:  # type: ignore[attr-defined]
            m = pattern.fullmatch(key)
            if m:
                return repl(m) if callable(repl) else m.expand(repl)
        return None

    def apply(
        self, state_dict: dict[str, torch.Tensor], ignore: Iterable[str] = ()
    ) -> dict[str, torch.Tensor]:
        """Rename every key of ``state_dict`` with `rename`, keeping the tensors (not copied).

        Args:
            state_dict: the source tensors.
            ignore: regexes; keys fully matching one are dropped instead of renamed.

        Returns:
            A new dict under the renamed keys, in the source's order.

        Raises:
            ConversionError: keys no rule matches (up to 10 listed), or two keys mapping to one.
        """
        ignored = [re.compile(p) for p in ignore]
        out: dict[str, torch.Tensor] = {}
        unknown = []
        for key, value in state_dict.items():
            if any(p.fullmatch(key) for p in ignored):
                continue
            new = self.rename(key)
            if new is None:
                unknown.append(key)
                continue
            if new in out:
                raise ConversionError(f"{self.source}: two keys map to {new!r} (second: {key!r})")
            out[new] = value
        if unknown:
            shown = ", ".join(unknown[:10]) + (
                f" ... (+{len(unknown) - 10} more)" if len(unknown) > 10 else ""
            )
            raise ConversionError(f"{self.source} checkpoint has keys this converter does not know: {shown}")
        return out


def shift_stage(m: re.Match[str], template: str, group: str = "layer", offset: int = -1) -> str:
    """Expand ``template`` with the stage number shifted by ``offset`` (1-based -> 0-based).

    Args:
        m: a rule's match; its named groups fill ``template``.
        template: a `str.format` template naming the match's groups, e.g. ``"stages.{layer}.0"``.
        group: the group holding the stage number.
        offset: added to that number (default -1: 1-based source stages to our 0-based ones).

    Returns:
        The expanded key.
    """
    groups = dict(m.groupdict())
    groups[group] = str(int(groups[group]) + offset)
    return template.format(**groups)


def flip_input_channels(state_dict: dict[str, torch.Tensor], key: str = "stem.conv.weight") -> None:
    """Reverse the input-channel order of the first conv: BGR-trained weights then take RGB (exact)."""
    if key not in state_dict:
        raise ConversionError(f"cannot flip the input channels: {key} is not in the checkpoint")
    w = state_dict[key]
    if w.shape[1] != 3:
        raise ConversionError(f"{key} has {w.shape[1]} input channels; a BGR<->RGB flip needs 3")
    state_dict[key] = w.flip(1).contiguous()
