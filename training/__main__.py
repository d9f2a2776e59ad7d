"""Run ``python -m training <command>`` (see ``training.cli``)."""

import sys

from .cli import main

sys.exit(main())
