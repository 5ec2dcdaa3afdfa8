"""``python -m LatentSRLib.cli`` (used by torchrun for multi-process training)."""

import sys

from . import main

sys.exit(main())
