"""``python -m mfed`` is the ``mfed`` command."""

import sys

from mfed.cli import main

sys.exit(main())
