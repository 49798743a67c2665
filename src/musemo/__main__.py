"""``python -m musemo``: the ``musemo`` command."""

import sys

from .cli import main

sys.exit(main())
