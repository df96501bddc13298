#!/bin/sh
# Install hook: runs in the staged directory before the switch. It checks that the
# box exposes what the sensor reads, and makes the log directory.
set -e
for f in /proc/loadavg /proc/uptime; do
    [ -r "$f" ] || { echo "setup: cannot read $f: is /proc mounted?" >&2; exit 1; }
done
mkdir -p log
echo "setup: sensor role is ready"
