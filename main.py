"""Start HyperInverter Studio (the command-line interface until the desktop editor lands)."""

import sys

from hyperinverter_gui.cli import main

if __name__ == "__main__":
    sys.exit(main())
