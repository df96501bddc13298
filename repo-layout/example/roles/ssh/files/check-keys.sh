#!/bin/sh
# Install hook: every line of authorized_keys is a comment or a public key in OpenSSH
# format ([options] type base64 [comment]); a pasted line that is not is refused here.
awk '
    /^[[:space:]]*(#|$)/ { next }
    {
        for (i = 1; i <= NF; i++)
            if ($i ~ /^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com)$/) {
                if ($(i + 1) ~ /^[A-Za-z0-9+\/]+=*$/) { keys++; next }
                break
            }
        printf "authorized_keys line %d is not a public key: %s\n", NR, substr($0, 1, 60) > "/dev/stderr"
        bad = 1
    }
    END { if (!bad) printf "authorized_keys: %d key(s)\n", keys; exit bad }
' authorized_keys
