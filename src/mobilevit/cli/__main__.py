"""``python -m mobilevit.cli``: the ``mobilevit`` command (what torchrun launches)."""

from . import main

if __name__ == "__main__":  # importing the module (e.g. pkgutil.walk_packages) must not run the command
    raise SystemExit(main())
