#!/bin/sh
# The sensor role: every BOOTPULL_VAR_INTERVAL seconds (default 5), append one line of
# what this box sees to log/sensor.log in the install directory. busybox sh is enough.
interval="${BOOTPULL_VAR_INTERVAL:-5}"
case "$interval" in ''|*[!0-9]*) echo "sensor: INTERVAL must be whole seconds, not '$interval'" >&2; exit 2;; esac
[ "$interval" -ge 1 ] || interval=1
log=log/sensor.log
max_bytes=1048576
mkdir -p log
sleeper=""
trap 'echo "sensor: stopping" >&2; [ -n "$sleeper" ] && kill "$sleeper" 2>/dev/null; exit 0' TERM INT
echo "sensor: logging to $log every ${interval}s as ${BOOTPULL_HOSTNAME:-unknown} (${BOOTPULL_ROLE:-sensor}@${BOOTPULL_VERSION:-?})" >&2
while :; do
    read -r l1 l5 l15 procs _ < /proc/loadavg
    read -r up _ < /proc/uptime
    mem=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo 2>/dev/null)
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) host=${BOOTPULL_HOSTNAME:-unknown} load=$l1,$l5,$l15 procs=$procs uptime=${up}s mem_available_kb=${mem:-?}" >> "$log"
    size=$(wc -c < "$log")
    if [ "$size" -gt "$max_bytes" ]; then mv "$log" "$log.1"; fi
    sleep "$interval" &
    sleeper=$!
    wait "$sleeper"
    sleeper=""
done
