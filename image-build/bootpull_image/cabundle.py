"""The image's CA bundle: certifi's CAs plus the site's (``bootpull image build --ca``).

:func:`load` reads the ``--ca`` files before the build starts (a file that is not PEM
certificates is a :class:`~bootpull.errors.UsageError` naming it, before any
download). :func:`bundle` appends the certificates to certifi's ``cacert.pem``; the
build writes the result to :data:`BUNDLE_PATH`, which the init names in
``SSL_CERT_FILE``, and links certifi's file to it, so that every https client in the
image (the node's fetch and reports, a role's) trusts the same CAs.
:func:`manifest_entry` is what ``manifest.json`` records of it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bootpull.errors import UsageError
from bootpull.fetch_http import PEM_HINT, read_pem

#: where the bundle goes: Debian's path, so that what looks there finds it too
BUNDLE_PATH = "etc/ssl/certs/ca-certificates.crt"
#: certifi's bundle in the image, which becomes a link to BUNDLE_PATH
CERTIFI_PATH = "usr/lib/python3/dist-packages/certifi/cacert.pem"


@dataclass(frozen=True)
class SiteCA:
    """One certificate of a ``--ca`` file."""

    file: str  # the file's name as given on the command line
    sha256: str  # the certificate's SHA-256 fingerprint (of its DER form)
    subject: str  # RFC 4514, as in CN=Site CA,O=Example
    not_after: str  # RFC 3339 UTC
    pem: bytes  # the certificate alone, as PEM (nothing else of the file goes in)


def load(paths: Sequence[Path]) -> tuple[SiteCA, ...]:
    """Every certificate in each of ``paths``, in order; UsageError for a file that is not
    PEM certificates (unreadable, DER, a key, anything else)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    out: list[SiteCA] = []
    for path in paths:
        data, hint = read_pem(path), PEM_HINT
        try:
            certs = x509.load_pem_x509_certificates(data)
        except ValueError as exc:
            raise UsageError(f"--ca {path}: not a PEM certificate file",
                             why=f"a certificate in it does not parse ({exc})",
                             hint=hint) from None
        for cert in certs:
            der = cert.public_bytes(serialization.Encoding.DER)
            out.append(SiteCA(
                file=Path(path).name, sha256=hashlib.sha256(der).hexdigest(),
                subject=cert.subject.rfc4514_string(),
                not_after=cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
                pem=cert.public_bytes(serialization.Encoding.PEM)))
    return tuple(out)


def expired_by(cas: Sequence[SiteCA], epoch: int) -> list[SiteCA]:
    """The certificates that expired before ``epoch`` (the image's build time, the
    nodes' clock floor): no node of this image would accept them."""
    when = datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return [ca for ca in cas if ca.not_after < when]


def bundle(base: bytes, cas: Sequence[SiteCA]) -> bytes:
    """certifi's ``base`` bundle, then each site CA under a comment naming it."""
    out = bytearray(base)
    if out and not out.endswith(b"\n"):
        out += b"\n"
    for ca in cas:
        out += (f"\n# bootpull image build --ca {ca.file}\n# {ca.subject}\n"
                f"# SHA-256 {ca.sha256}, not after {ca.not_after}\n").encode()
        out += ca.pem
    return bytes(out)


def manifest_entry(data: bytes, certifi_version: str, cas: Sequence[SiteCA]) -> dict[str, Any]:
    """What manifest.json says of the bundle ``data``: where, its hash, what it holds."""
    return {
        "path": "/" + BUNDLE_PATH,
        "sha256": hashlib.sha256(data).hexdigest(),
        "base": f"certifi {certifi_version}",
        "added": [{"file": ca.file, "sha256": ca.sha256, "subject": ca.subject,
                   "not_after": ca.not_after} for ca in cas],
    }
