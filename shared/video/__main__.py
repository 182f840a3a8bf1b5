"""``python -m shared.video``: see ``shared.video.cli``."""

import sys

from shared.video.cli import main

sys.exit(main())
