"""Start HyperInverter Studio: the desktop editor (`python main.py [PHOTO]`)."""

import sys

from hyperinverter_gui._qt.app import main

if __name__ == "__main__":
    sys.exit(main(photo=sys.argv[1] if len(sys.argv) > 1 else None))
