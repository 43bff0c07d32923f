"""``python -m cysocketserver``: the command line (``cysocketserver.cli``)."""
import sys

from cysocketserver.cli import main

if __name__ == "__main__":
    sys.exit(main())
