"""`python -m ponas.cli`: the same as the `ponas` command."""

import sys

from ponas.cli.main import main

sys.exit(main())
