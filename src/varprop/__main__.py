"""``python -m varprop`` runs the command line."""

import sys

from varprop.cli import main

sys.exit(main())
