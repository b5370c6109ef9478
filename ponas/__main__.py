"""`python -m ponas`: the same as the `ponas` command."""

import sys

from ponas.cli import main

sys.exit(main())
