"""The ``hyperinverter`` command: invert, edit, interpolate, align, paste-back, weights and
directions. A thin front end over ``engine`` and ``app``. May import: ``app`` and below.
"""

from hyperinverter_gui.cli.main import main

__all__ = ["main"]
