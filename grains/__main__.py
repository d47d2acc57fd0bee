"""Entry point for `python -m grains`."""

import sys

from grains.cli import main

sys.exit(main())
