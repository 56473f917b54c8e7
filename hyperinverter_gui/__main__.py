"""``python -m hyperinverter_gui [COMMAND ...]``: the same as the ``hyperinverter`` command."""

import sys

from hyperinverter_gui.launcher import main

sys.exit(main())
