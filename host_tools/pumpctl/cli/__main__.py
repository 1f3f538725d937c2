"""`python -m pumpctl.cli`: the `pumpctl` command."""
import sys

from . import main

sys.exit(main())
