#!/bin/sh
# Health check: the page server answers "ok" on /healthz on its port. busybox wget,
# not Python: a check that runs every few seconds should cost next to nothing (and a
# second Python starting beside the server slows the server's own start). It allows
# the server a few seconds to come up, so the first check right after start does not
# race it.
port=${BOOTPULL_VAR_PORT:-8080}
tries=0
while [ "$tries" -lt 12 ]; do
    # (no wget -T: busybox 1.35's static wget crashes with it; timeout does the same)
    answer=$(timeout 3 wget -q -O - "http://127.0.0.1:$port/healthz" 2>/dev/null)
    [ "$answer" = ok ] && exit 0
    tries=$((tries + 1))
    sleep 0.5
done
if [ -n "$answer" ]; then
    echo "health: web answered on port $port, but not 'ok': $answer" >&2
else
    echo "health: web is not answering on port $port" >&2
fi
exit 1
