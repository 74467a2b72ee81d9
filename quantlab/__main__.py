"""``python -m quantlab`` is the same program as the ``quantlab`` console script."""
import sys

from .cli import main

sys.exit(main())
