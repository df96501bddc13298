#!/bin/sh
# Install hook: runs in the staged directory before the switch. A non-zero exit
# aborts the install and the node keeps the version it has.
set -e
command -v python3 >/dev/null || { echo "check: python3 is missing from the image" >&2; exit 1; }
python3 -c "import ast; ast.parse(open('web.py').read(), 'web.py')"
grep -q '{rows}' page.html || { echo "check: page.html lost its {rows} marker" >&2; exit 1; }
echo "check: web role is ready"
