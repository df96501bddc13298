"""Signed reports (bootpull.httpsig): RFC 9421 signatures over an RFC 9530 digest.

A round trip; every tampering refused with its reason; requests signed here verified by
an independent implementation (the ``http-message-signatures`` package) and requests
it signed verified here; and garbled headers never raise anything but SignatureError.
"""

from __future__ import annotations

import base64
import email.message
import hashlib
import secrets
from collections.abc import Callable

import pytest
import requests
from bootpull import httpsig, identity
from bootpull.httpsig import COMPONENTS, SignatureError, sign_request, verify_request
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from http_message_signatures import (
    HTTPMessageSigner,
    HTTPMessageVerifier,
    HTTPSignatureKeyResolver,
    InvalidSignature,
    algorithms,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

PATH = "/api/v1/events"
BODY = b'[{"format": 1, "node": "52-54-00-aa-bb-cc", "status": "ok"}]'
NODE = identity.generate()
OTHER = identity.generate()
CREATED = 1_800_000_000
NONCE = "0123456789abcdef0123456789abcdef"


def signed(body: bytes = BODY, ident: identity.NodeIdentity = NODE, **kw: object
           ) -> dict[str, str]:
    return sign_request(ident, method="POST", path=PATH, body=body, **kw)  # type: ignore[arg-type]


def verify(headers: dict[str, str], *, body: bytes = BODY, method: str = "POST",
           path: str = PATH) -> httpsig.Verified:
    return verify_request(method=method, path=path, headers=headers, body=body)


def refused(headers: dict[str, str], **kw: object) -> str:
    with pytest.raises(SignatureError) as caught:
        verify(headers, **kw)  # type: ignore[arg-type]
    return str(caught.value)


def test_the_headers_and_the_signature_base_are_exactly_the_documented_ones() -> None:
    h = signed(created=CREATED, nonce=NONCE)
    digest = base64.b64encode(hashlib.sha256(BODY).digest()).decode()
    params = ('("@method" "@path" "content-type" "content-digest" "bootpull-key" '
              f'"bootpull-age");created={CREATED};nonce="{NONCE}";keyid="{NODE.public}";'
              'alg="ed25519"')
    assert list(h) == ["Content-Type", "Content-Digest", "Bootpull-Key", "Bootpull-Age",
                       "Signature-Input", "Signature"]
    assert h["Content-Type"] == "application/json"
    assert h["Content-Digest"] == f"sha-256=:{digest}:"
    assert h["Bootpull-Key"] == NODE.public and h["Bootpull-Age"] == NODE.recipient
    assert h["Signature-Input"] == f"bootpull={params}"
    base = "\n".join([
        '"@method": POST', f'"@path": {PATH}', '"content-type": application/json',
        f'"content-digest": sha-256=:{digest}:', f'"bootpull-key": {NODE.public}',
        f'"bootpull-age": {NODE.recipient}', f'"@signature-params": {params}']).encode()
    assert h["Signature"].startswith("bootpull=:") and h["Signature"].endswith(":")
    raw = base64.b64decode(h["Signature"][len("bootpull=:"):-1])
    NODE.signing.public_key().verify(raw, base)  # raises unless it is exactly this base
    got = verify(h)
    assert got == httpsig.Verified(key=NODE.public, age=NODE.recipient, created=CREATED,
                                   nonce=NONCE, keyid=NODE.public)
    assert got.fingerprint == NODE.fingerprint


def test_defaults_are_now_and_a_random_nonce() -> None:
    import time

    one, two = signed(), signed()
    a, b = verify(one), verify(two)
    assert abs(a.created - time.time()) < 5 and a.nonce != b.nonce
    assert len(a.nonce) == 32 and int(a.nonce, 16) >= 0


def test_names_are_case_insensitive_and_values_trimmed() -> None:
    h = signed()
    assert verify({k.lower(): v for k, v in h.items()}).key == NODE.public
    assert verify({k.upper(): f"  {v}\t" for k, v in h.items()}).key == NODE.public
    msg = email.message.Message()  # http.server's headers
    for k, v in h.items():
        msg[k] = v
    msg["Content-Length"] = str(len(BODY))
    assert verify_request(method="POST", path=PATH, headers=msg,  # type: ignore[arg-type]
                          body=BODY).key == NODE.public


def swap_params(h: dict[str, str], old: str, new: str) -> dict[str, str]:
    assert old in h["Signature-Input"]
    return {**h, "Signature-Input": h["Signature-Input"].replace(old, new)}


def flip_signature(h: dict[str, str]) -> dict[str, str]:
    raw = bytearray(base64.b64decode(h["Signature"][len("bootpull=:"):-1]))
    raw[10] ^= 1
    return {**h, "Signature": f"bootpull=:{base64.b64encode(bytes(raw)).decode()}:"}


Tamper = Callable[[dict[str, str]], tuple[dict[str, str], dict[str, object]]]
TAMPERINGS: dict[str, tuple[Tamper, str]] = {
    "body": (lambda h: (h, {"body": BODY + b" "}), "Content-Digest does not match the body"),
    "content-type": (lambda h: ({**h, "Content-Type": "text/plain"}, {}),
                     "the signature does not verify"),
    "content-digest": (lambda h: ({**h, "Content-Digest": httpsig.content_digest(b"[]")},
                                  {"body": b"[]"}), "the signature does not verify"),
    "bootpull-key": (lambda h: ({**h, "Bootpull-Key": OTHER.public}, {}),
                     "keyid is not Bootpull-Key"),
    "bootpull-key and keyid": (
        lambda h: (swap_params({**h, "Bootpull-Key": OTHER.public}, NODE.public,
                               OTHER.public), {}), "the signature does not verify"),
    "bootpull-age": (lambda h: ({**h, "Bootpull-Age": OTHER.recipient}, {}),
                     "the signature does not verify"),
    "method": (lambda h: (h, {"method": "PUT"}), "the signature does not verify"),
    "path": (lambda h: (h, {"path": "/api/v1/events/x"}), "the signature does not verify"),
    "created": (lambda h: (swap_params(h, f"created={CREATED}", f"created={CREATED + 1}"),
                           {}), "the signature does not verify"),
    "nonce": (lambda h: (swap_params(h, NONCE, "f" * 32), {}),
              "the signature does not verify"),
    "signature bytes": (lambda h: (flip_signature(h), {}), "the signature does not verify"),
    "label": (lambda h: ({**h, "Signature": h["Signature"].replace("bootpull=", "other="),
                          "Signature-Input": h["Signature-Input"].replace("bootpull=",
                                                                          "other=")}, {}),
              "must hold exactly the label bootpull (it has other)"),
    "a second label": (lambda h: ({**h, "Signature": h["Signature"] + ", x=:AAAA:"}, {}),
                       "must hold exactly the label bootpull (it has bootpull, x)"),
    "missing component": (lambda h: (swap_params(h, ' "bootpull-key"', ""), {}),
                          "the signature does not cover bootpull-key"),
    "an extra component": (lambda h: (swap_params(h, '"@path"', '"@path" "@authority"'),
                                      {}), "the signature covers @authority"),
    "a component twice": (lambda h: (swap_params(h, '"@path"', '"@path" "@path"'), {}),
                          "component @path is covered twice"),
    "a component parameter": (lambda h: (swap_params(h, '"content-digest"',
                                                     '"content-digest";sf'), {}),
                              "component content-digest has parameters"),
    "keyid": (lambda h: (swap_params(h, f'keyid="{NODE.public}"',
                                     f'keyid="{OTHER.public}"'), {}),
              "keyid is not Bootpull-Key"),
    "alg": (lambda h: (swap_params(h, 'alg="ed25519"', 'alg="rsa-pss-sha512"'), {}),
            "alg is not ed25519"),
    "alg as a token": (lambda h: (swap_params(h, 'alg="ed25519"', "alg=ed25519"), {}),
                       "alg is not ed25519"),
    "no alg": (lambda h: (swap_params(h, ';alg="ed25519"', ""), {}),
               "the signature has no alg parameter"),
    "an unknown parameter": (lambda h: (swap_params(h, ";alg=", ";expires=1;alg="), {}),
                             "unexpected signature parameter expires"),
    "a bad nonce": (lambda h: (swap_params(h, NONCE, "xyz"), {}),
                    "nonce is not 32 lowercase hex digits"),
    "no Signature": (lambda h: ({k: v for k, v in h.items() if k != "Signature"}, {}),
                     "no Signature header"),
    "no Signature-Input": (lambda h: ({k: v for k, v in h.items()
                                       if k != "Signature-Input"}, {}),
                           "no Signature-Input header"),
    "no Content-Digest": (lambda h: ({k: v for k, v in h.items()
                                      if k != "Content-Digest"}, {}),
                          "no Content-Digest header"),
    "no Bootpull-Key": (lambda h: ({k: v for k, v in h.items() if k != "Bootpull-Key"},
                                   {}), "no Bootpull-Key header"),
    "no Bootpull-Age": (lambda h: ({k: v for k, v in h.items() if k != "Bootpull-Age"},
                                   {}), "no Bootpull-Age header"),
    "a bad age recipient": (lambda h: ({**h, "Bootpull-Age": NODE.recipient[:-1] + "q"},
                                       {}), "Bootpull-Age is not an age1"),
    "a bad key": (lambda h: ({**h, "Bootpull-Key": "ed25519:AAAA"}, {}),
                  "Bootpull-Key is not ed25519:<base64 of 32 bytes>"),
    "a short signature": (lambda h: ({**h, "Signature": "bootpull=:AAAA:"}, {}),
                          "the signature is not 64 bytes"),
    "a sha-512 that does not match": (
        lambda h: ({**h, "Content-Digest": h["Content-Digest"] + ", sha-512=:"
                    + base64.b64encode(bytes(64)).decode() + ":"}, {}),
        "Content-Digest does not match the body"),
}


@pytest.mark.parametrize("what", list(TAMPERINGS))
def test_every_tampering_is_refused_with_its_reason(what: str) -> None:
    tamper, reason = TAMPERINGS[what]
    headers, kw = tamper(signed(created=CREATED, nonce=NONCE))
    assert reason in refused(headers, **kw)


def test_an_unsigned_request_says_so() -> None:
    assert refused({"Content-Type": "application/json"}) == "no Signature header"


def test_max_skew_is_the_callers_freshness_policy() -> None:
    h = signed(created=CREATED, nonce=NONCE)
    assert verify_request(method="POST", path=PATH, headers=h, body=BODY, now=CREATED + 30,
                          max_skew=60).created == CREATED
    with pytest.raises(SignatureError, match="more than 60 s"):
        verify_request(method="POST", path=PATH, headers=h, body=BODY, now=CREATED + 61,
                       max_skew=60)


# -- the independent implementation -------------------------------------------------


class Keys(HTTPSignatureKeyResolver):
    """The key of a keyid is the key the keyid spells (ed25519:<base64>)."""

    def __init__(self, private: Ed25519PrivateKey | None = None) -> None:
        self.private = private

    def resolve_public_key(self, key_id: str) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(httpsig.raw_public(key_id))

    def resolve_private_key(self, key_id: str) -> Ed25519PrivateKey:
        assert self.private is not None
        return self.private


def prepared(headers: dict[str, str], body: bytes = BODY,
             url: str = "http://homebase.example:8080" + PATH) -> requests.PreparedRequest:
    return requests.Request("POST", url, data=body, headers=headers).prepare()


def test_the_library_verifies_what_bootpull_signed_digest_included() -> None:
    verifier = HTTPMessageVerifier(signature_algorithm=algorithms.ED25519,
                                   key_resolver=Keys())
    h = signed()
    [result] = verifier.verify(prepared(h), body=BODY, expect_tag=None,
                               require_components=COMPONENTS)
    assert result.label == "bootpull" and result.body == BODY
    assert result.parameters["keyid"] == NODE.public and result.parameters["alg"] == "ed25519"
    assert [k.strip('"') for k in result.covered_components] == [*COMPONENTS,
                                                                 "@signature-params"]
    # and it refuses what bootpull refuses: another body, another header value
    with pytest.raises(InvalidSignature):
        verifier.verify(prepared(h, body=BODY + b" "), body=BODY + b" ")
    with pytest.raises(InvalidSignature):
        verifier.verify(prepared({**h, "Bootpull-Age": OTHER.recipient}), body=BODY)


def test_bootpull_verifies_what_the_library_signed() -> None:
    signer = HTTPMessageSigner(signature_algorithm=algorithms.ED25519,
                               key_resolver=Keys(NODE.signing))
    req = prepared({"Content-Type": "application/json", "Bootpull-Key": NODE.public,
                    "Bootpull-Age": NODE.recipient})
    nonce = secrets.token_hex(16)
    signer.sign(req, key_id=NODE.public, nonce=nonce, label="bootpull",
                covered_component_ids=COMPONENTS, body=BODY)  # it adds the Content-Digest
    headers = dict(req.headers)
    assert headers["Content-Digest"] == httpsig.content_digest(BODY)
    # its parameters come in another order (created, keyid, alg, nonce): still RFC 9421
    assert headers["Signature-Input"].index("keyid") < headers["Signature-Input"].index("nonce")
    assert isinstance(req.body, bytes)
    got = verify_request(method="POST", path=PATH, headers=headers, body=req.body)
    assert got.key == NODE.public and got.nonce == nonce
    # signed by the library with the wrong key: refused here
    wrong = HTTPMessageSigner(signature_algorithm=algorithms.ED25519,
                              key_resolver=Keys(OTHER.signing))
    req2 = prepared({"Content-Type": "application/json", "Bootpull-Key": NODE.public,
                     "Bootpull-Age": NODE.recipient})
    wrong.sign(req2, key_id=NODE.public, nonce=nonce, label="bootpull",
               covered_component_ids=COMPONENTS, body=BODY)
    assert refused(dict(req2.headers)) == "the signature does not verify"
    # the library's default label and coverage are not bootpull's
    req3 = prepared({"Content-Type": "application/json", "Bootpull-Key": NODE.public,
                     "Bootpull-Age": NODE.recipient})
    signer.sign(req3, key_id=NODE.public, body=BODY)
    assert "label bootpull" in refused(dict(req3.headers))


# -- garbage in, SignatureError out -------------------------------------------------

HEADER_NAMES = st.sampled_from(["Signature", "Signature-Input", "Content-Digest",
                                "Bootpull-Key", "Bootpull-Age", "Content-Type", "X-Other"])
SF_ALPHABET = st.sampled_from([*'bootpul=:;,()"\\ -?*@.0123456789abcdefABCDEF+/\t',
                               "\x00", "\x7f", "é", "\n", "ﬀ", "𝟘"])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(HEADER_NAMES, st.text(SF_ALPHABET, max_size=80), max_size=7),
       st.binary(max_size=64))
def test_random_headers_raise_only_signature_error(headers: dict[str, str],
                                                   body: bytes) -> None:
    with pytest.raises(SignatureError):
        verify(headers, body=body)


@settings(max_examples=600, deadline=None)
@given(st.sampled_from(["Signature", "Signature-Input", "Content-Digest", "Bootpull-Key",
                        "Bootpull-Age", "Content-Type"]),
       st.integers(min_value=0, max_value=400), st.integers(min_value=0, max_value=5),
       st.text(SF_ALPHABET, max_size=6))
def test_garbled_signed_headers_raise_only_signature_error(name: str, at: int, cut: int,
                                                           insert: str) -> None:
    h = signed(created=CREATED, nonce=NONCE)
    value = h[name]
    at = min(at, len(value))
    garbled = {**h, name: value[:at] + insert + value[at + cut:]}
    try:
        got = verify(garbled)
    except SignatureError:
        return
    # what still verifies is the same request (say, spaces trimmed around a value)
    assert got == verify(h)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=20), st.text(max_size=40)), max_size=8))
def test_odd_header_containers_raise_only_signature_error(
        pairs: list[tuple[str, str]]) -> None:
    msg = email.message.Message()
    for name, value in pairs:
        try:
            msg[name] = value
        except (ValueError, TypeError):
            continue
    with pytest.raises(SignatureError):
        verify_request(method="POST", path=PATH, headers=msg,  # type: ignore[arg-type]
                       body=BODY)
