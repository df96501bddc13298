#!/bin/sh
# Capture what rules.bpf matches on $BOOTPULL_VAR_IFACE (default: every interface),
# one line per packet on the console. tcpdump runs as user tcpdump with CAP_NET_RAW
# and CAP_NET_ADMIN (role.toml), never as root.
set -f  # the rules are words for tcpdump, not file names
rules=$(sed 's/#.*//' rules.bpf)
echo "ids: running as $(id)"
echo "ids: capturing on ${BOOTPULL_VAR_IFACE:-any} what rules.bpf matches:" $rules
exec ./bin/tcpdump -n -l -p -i "${BOOTPULL_VAR_IFACE:-any}" $rules
