"""``python -m mobilevit.cli``: the ``mobilevit`` command (what torchrun launches)."""

from . import main

raise SystemExit(main())
