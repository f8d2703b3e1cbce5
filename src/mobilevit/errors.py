"""The base of the errors a user can act on (bad input, a run that cannot go on, an export that
cannot be made): the command line prints them as one line and exits 2. Errors about bad values
are also ``ValueError``s; anything else that escapes is a bug and keeps its traceback."""

from __future__ import annotations


class MobileViTError(Exception):
    """An error with a message meant for the user, not a bug."""
