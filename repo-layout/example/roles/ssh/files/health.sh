#!/bin/sh
# Healthy while something listens on the ssh port (/proc/net/tcp and tcp6: state 0A).
port=$(printf '%04X' "${BOOTPULL_VAR_SSH_PORT:-22}")
if awk -v p=":$port" 'substr($2, length($2) - 4) == p && $4 == "0A" { found = 1 } END { exit !found }' \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null; then
    exit 0
fi
echo "nothing listens on port ${BOOTPULL_VAR_SSH_PORT:-22}"
exit 1
