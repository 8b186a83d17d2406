"""``python -m mlvec ...`` runs the command line (see :mod:`mlvec.cli`)."""

import sys

from mlvec.cli import main

sys.exit(main())
