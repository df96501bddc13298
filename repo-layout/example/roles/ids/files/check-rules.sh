#!/bin/sh
# Install hook: tcpdump compiles rules.bpf (against empty.pcap, a capture file with no
# packets, so no interface is opened). A rule it cannot parse fails the install; the
# node keeps the version it runs and reports tcpdump's own words.
set -f
rules=$(sed 's/#.*//' rules.bpf)
if [ -z "$(echo $rules)" ]; then
    echo "rules.bpf has no rule: write one pcap-filter expression, as in 'tcp port 80'" >&2
    exit 1
fi
out=$(./bin/tcpdump -d -r empty.pcap $rules 2>&1) || {
    echo "rules.bpf is refused: $out" >&2
    exit 1
}
echo "rules.bpf: $(echo "$out" | wc -l) BPF instructions"
