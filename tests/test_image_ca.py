"""``bootpull image build --ca FILE``: the site's CAs in the image's CA bundle and in
manifest.json, without a whole build (the steps that do it run on a small tree)."""

from __future__ import annotations

import hashlib
import json
import ssl
import time
from pathlib import Path
from typing import Any

import pytest
from bootpull.cli import main
from bootpull.console import Console
from bootpull.errors import UsageError
from bootpull_image import build, cabundle
from bootpull_image.settings import BuildSettings, Context
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from fakes import CapturingWriter
from nginxserver import SitePki

CERTIFI = b"# a stand-in for certifi's cacert.pem\n"


def small_context(tmp_path: Path, cas: tuple[cabundle.SiteCA, ...]) -> Context:
    """A staging tree with what the CA steps read: certifi's bundle and the node."""
    settings = BuildSettings(out=tmp_path / "out", source_date_epoch=1_700_000_000,
                             cache=tmp_path / "cache")
    settings.out.mkdir()
    ctx = Context(settings, tmp_path / "work", tmp_path / "root", site_cas=cas,
                  python_packages={"certifi": "2026.10.18"})
    certifi = ctx.root / cabundle.CERTIFI_PATH
    certifi.parent.mkdir(parents=True)
    certifi.write_bytes(CERTIFI)
    return ctx


def test_load_reads_each_certificate_of_each_file(site_pki: SitePki, tmp_path: Path) -> None:
    both = tmp_path / "chain.pem"
    both.write_bytes(site_pki.valid.cert.read_bytes() + b"\n" + site_pki.ca_file.read_bytes())
    cas = cabundle.load([site_pki.ca_file, both])
    assert [ca.file for ca in cas] == ["site-ca.pem", "chain.pem", "chain.pem"]
    ca = x509.load_pem_x509_certificate(site_pki.ca_file.read_bytes())
    assert cas[0].subject == "CN=bootpull test site CA,O=bootpull tests"
    assert cas[0].sha256 == hashlib.sha256(ca.public_bytes(Encoding.DER)).hexdigest()
    assert cas[0].not_after == ca.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert cas[0].pem == ca.public_bytes(Encoding.PEM) == cas[2].pem


@pytest.mark.parametrize("content", [b"", b"not a certificate\n", b"\x30\x82\x01\x0a" + bytes(64),
                                     b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n"
                                     b"-----END CERTIFICATE-----\n"])
def test_load_refuses_what_is_not_a_pem_certificate(content: bytes, tmp_path: Path) -> None:
    bad = tmp_path / "site.crt"
    bad.write_bytes(content)
    with pytest.raises(UsageError, match=f"--ca {bad}: not a PEM certificate file") as err:
        cabundle.load([bad])
    assert err.value.exit_code == 2 and "PEM" in err.value.hint


def test_load_refuses_a_key_and_names_a_missing_file(site_pki: SitePki, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not a PEM certificate file"):
        cabundle.load([site_pki.valid.key])
    with pytest.raises(UsageError, match="cannot be read"):
        cabundle.load([tmp_path / "nowhere.pem"])


def test_the_bundle_holds_certifi_and_the_site_ca_and_certifi_links_to_it(
        site_pki: SitePki, tmp_path: Path) -> None:
    cas = cabundle.load([site_pki.ca_file])
    ctx = small_context(tmp_path, cas)
    build.install_ca_bundle(ctx)
    bundle = ctx.root / cabundle.BUNDLE_PATH
    data = bundle.read_bytes()
    assert data.startswith(CERTIFI) and data.endswith(cas[0].pem)
    assert b"# bootpull image build --ca site-ca.pem\n" in data
    certifi = ctx.root / cabundle.CERTIFI_PATH
    assert certifi.is_symlink() and str(certifi.readlink()) == "/etc/ssl/certs/ca-certificates.crt"
    context = ssl.create_default_context(cafile=str(bundle))  # OpenSSL reads it
    assert [x509.load_der_x509_certificate(der).subject.rfc4514_string()
            for der in context.get_ca_certs(binary_form=True)] \
        == ["CN=bootpull test site CA,O=bootpull tests"]


def test_the_manifest_records_the_site_cas(site_pki: SitePki, tmp_path: Path) -> None:
    cas = cabundle.load([site_pki.ca_file])
    ctx = small_context(tmp_path, cas)
    build.install_ca_bundle(ctx)
    build.write_manifest(ctx)
    manifest: dict[str, Any] = json.loads((ctx.settings.out / "manifest.json").read_text())
    data = (ctx.root / cabundle.BUNDLE_PATH).read_bytes()
    assert manifest["ca_bundle"] == {
        "path": "/etc/ssl/certs/ca-certificates.crt",
        "sha256": hashlib.sha256(data).hexdigest(),
        "base": "certifi 2026.10.18",
        "added": [{"file": "site-ca.pem", "sha256": cas[0].sha256,
                   "subject": "CN=bootpull test site CA,O=bootpull tests",
                   "not_after": cas[0].not_after}],
    }
    assert manifest["files"]["usr/lib/python3/dist-packages/certifi/cacert.pem"] == {
        "link": "/etc/ssl/certs/ca-certificates.crt"}


def test_without_ca_the_bundle_is_certifis(tmp_path: Path) -> None:
    ctx = small_context(tmp_path, ())
    build.install_ca_bundle(ctx)
    assert (ctx.root / cabundle.BUNDLE_PATH).read_bytes() == CERTIFI


def test_the_init_names_the_bundle() -> None:
    init = (Path(build.HERE) / "init").read_text()
    assert f"export SSL_CERT_FILE=/{cabundle.BUNDLE_PATH}\n" in init


def test_image_build_refuses_a_bad_ca_before_any_step(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    def no_step(ctx: Context) -> None:
        raise AssertionError("the build started")

    monkeypatch.setattr(build, "STEPS", (no_step,))
    bad = tmp_path / "site-ca.der"
    bad.write_bytes(b"\x30\x82\x01\x0a" + bytes(64))
    code = main(["image", "build", "--out", str(tmp_path / "out"), "--ca", str(bad),
                 "--cache", str(tmp_path / "cache")])
    assert code == 2
    err = capsys.readouterr().err
    assert f"--ca {bad}: not a PEM certificate file" in err
    assert not (tmp_path / "out").exists()


def test_image_build_takes_repeated_cas_and_warns_about_an_expired_one(
        site_pki: SitePki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cryptography.hazmat.primitives import serialization

    seen: list[tuple[cabundle.SiteCA, ...]] = []

    def stop(ctx: Context) -> None:
        seen.append(ctx.site_cas)
        raise UsageError("stopped here")

    monkeypatch.setattr(build, "STEPS", (stop,))
    expired = tmp_path / "old-ca.pem"
    expired.write_bytes(x509.load_pem_x509_certificate(site_pki.expired.cert.read_bytes())
                        .public_bytes(serialization.Encoding.PEM))
    out = CapturingWriter()
    settings = BuildSettings(out=tmp_path / "out", ca=(site_pki.ca_file, expired),
                             cache=tmp_path / "cache", source_date_epoch=int(time.time()))
    with pytest.raises(UsageError, match="stopped here"):
        build.build_image(settings, Console(out))
    assert [ca.file for ca in seen[0]] == ["site-ca.pem", "old-ca.pem"]
    assert "--ca old-ca.pem:" in out.text and "no node of this image will trust it" in out.text
