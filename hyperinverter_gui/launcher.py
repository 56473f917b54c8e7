"""The program's entry points: ``hyperinverter`` (the editor with no arguments, else the command
line) and ``hyperinverter-studio`` (the editor). The one module above both front ends."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def gui(argv: Sequence[str] | None = None) -> int:
    """Open the editor; an optional first argument is a photo (or session) to open."""
    from hyperinverter_gui._qt.app import main as gui_main

    args = list(sys.argv[1:] if argv is None else argv)
    return gui_main(photo=args[0] if args else None)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        return gui([])
    from hyperinverter_gui.cli import main as cli_main

    return cli_main(args)


if __name__ == "__main__":
    sys.exit(main())
