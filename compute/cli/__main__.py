"""`python -m compute.cli ...` = `rtx ...`."""

import sys

from compute.cli import main

sys.exit(main())
