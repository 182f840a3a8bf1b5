"""Entry point: ``python -m scoring {stylize,train,flicker} ...`` (see ``scoring/cli.py``)."""

import sys

from scoring.cli import main

sys.exit(main())
