#!/bin/sh
# Healthy while tcpdump runs and holds a packet socket (it is capturing).
for comm in /proc/[0-9]*/comm; do
    [ "$(cat "$comm" 2>/dev/null)" = tcpdump ] || continue
    for fd in "${comm%/comm}"/fd/*; do
        inode=$(readlink "$fd" 2>/dev/null | sed -n 's/^socket:\[\([0-9]*\)\]$/\1/p')
        if [ -n "$inode" ] && awk -v i="$inode" '$9 == i { found = 1 } END { exit !found }' /proc/net/packet; then
            exit 0
        fi
    done
done
echo "tcpdump is not capturing (no tcpdump process with a packet socket)"
exit 1
