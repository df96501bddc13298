#!/bin/sh
# Health check: the sensor wrote a reading within the last three intervals. Right after
# start it allows a few seconds for the first line to appear.
interval="${BOOTPULL_VAR_INTERVAL:-5}"
case "$interval" in ''|*[!0-9]*) interval=5;; esac
log=log/sensor.log
tries=0
while [ ! -s "$log" ] && [ "$tries" -lt 6 ]; do sleep 0.5; tries=$((tries + 1)); done
[ -s "$log" ] || { echo "health: no readings in $log yet" >&2; exit 1; }
age=$(( $(date +%s) - $(date -r "$log" +%s) ))
limit=$(( interval * 3 + 2 ))
if [ "$age" -gt "$limit" ]; then
    echo "health: last reading is ${age}s old (limit ${limit}s)" >&2
    exit 1
fi
tail -n 1 "$log"
