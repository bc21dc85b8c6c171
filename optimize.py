"""PAG dataset bootstrapping: ``python optimize.py [options]`` is ``parlmt optimize [options]``."""

import sys

from parlmt.cli import main

if __name__ == "__main__":
    sys.exit(main(["optimize", *sys.argv[1:]]))
