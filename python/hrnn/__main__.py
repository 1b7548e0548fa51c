"""``python -m hrnn``: the ``hrnn`` command."""
import sys

from .cli import main

sys.exit(main())
