"""`python -m gtpo` runs the `gtpo` command, for launchers that take a module (accelerate launch -m gtpo)."""

import sys

from gtpo.app.cli import main

sys.exit(main())
