import sys

from bootpull.cli import main

sys.exit(main())
