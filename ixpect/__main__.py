import sys

from ixpect.cli import main

sys.exit(main())
