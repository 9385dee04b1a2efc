import sys

from kmmio.cli import main

sys.exit(main())
