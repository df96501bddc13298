"""``python tests/in_image.py MARKER ARGS...``: ``bootpull ARGS`` as the boot image runs
it, with ``MARKER`` standing in for the image's /etc/bootpull/image.conf (namespace
tests that let discovery pick every interface there, as the image does)."""

from __future__ import annotations

import sys
from pathlib import Path

from bootpull import settings
from bootpull.cli import main

if __name__ == "__main__":
    settings.IMAGE_MARKER = Path(sys.argv[1])
    sys.exit(main(sys.argv[2:]))
