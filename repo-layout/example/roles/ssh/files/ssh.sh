#!/bin/sh
# dropbear on port $BOOTPULL_VAR_SSH_PORT (default 22), public keys only (the ones in
# authorized_keys, changed by commit). The host key lives in $BOOTPULL_DATA_DIR, so it
# survives new versions, and reboots when the node has a state disk.
set -e
key="$BOOTPULL_DATA_DIR/dropbear_ed25519_host_key"
if [ ! -s "$key" ]; then
    echo "ssh: no host key yet; making one in $key"
    ./bin/dropbearkey -t ed25519 -f "$key" > /dev/null
fi
echo "ssh: host key $(./bin/dropbearkey -y -f "$key" | sed -n 's/^Fingerprint: //p')"
home=$(awk -F: '$1 == "root" { print $6 }' /etc/passwd)
mkdir -p "$home/.ssh"
chmod 700 "$home" "$home/.ssh"
cp authorized_keys "$home/.ssh/authorized_keys"
chmod 600 "$home/.ssh/authorized_keys"
echo "ssh: $(grep -c '^[^#]' authorized_keys) authorized key(s); listening on port ${BOOTPULL_VAR_SSH_PORT:-22}"
# -F foreground, -E log to stderr, -s no passwords, -j -k no port forwarding
exec ./bin/dropbear -F -E -s -j -k -P /run/dropbear-ssh.pid -r "$key" -p "${BOOTPULL_VAR_SSH_PORT:-22}"
