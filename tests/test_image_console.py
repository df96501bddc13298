"""The console speed given at build time reaches the image's configuration, its
``manifest.json`` and its default kernel command line, and the lab boots with it.
Runs the builder's ``configure`` and ``write_manifest`` steps on a small staging tree
(no full image build) and the lab's QEMU command line (no boot)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bootpull.mac import Mac
from bootpull_image.build import configure, write_manifest
from bootpull_image.iso import boot_config, kernel_cmdline
from bootpull_image.settings import BuildSettings, Context
from bootpull_lab.vm import Nic, Vm, image_console


def _configured(tmp_path: Path, console: str) -> tuple[dict[str, object], str]:
    out, root = tmp_path / "out", tmp_path / "root"
    out.mkdir()
    root.mkdir()
    ctx = Context(settings=BuildSettings(out=out, source_date_epoch=1700000000,
                                         cache=tmp_path / "cache", console=console),
                  work=tmp_path, root=root, kernel_version="6.1.0-test")
    configure(ctx)
    write_manifest(ctx)
    return (json.loads((out / "manifest.json").read_text()),
            (root / "etc/bootpull/image.conf").read_text())


@pytest.mark.parametrize("console", ["ttyS0,9600", "ttyS1,57600", "ttyS0,115200"])
def test_the_build_console_reaches_the_manifest_and_the_init(tmp_path: Path,
                                                            console: str) -> None:
    manifest, conf = _configured(tmp_path, console)
    assert manifest["console"] == console
    assert manifest["kernel"]["cmdline"] == f"console={console} rootfstype=ramfs quiet"  # type: ignore[index]
    assert f"IMAGE_CONSOLE={console}" in conf.splitlines()
    assert f"console={console} " in boot_config(console)


def test_a_console_that_is_not_a_tty_leaves_the_kernel_on_the_first_serial_port() -> None:
    assert kernel_cmdline("/dev/null") == "console=ttyS0,115200 rootfstype=ramfs quiet"


def _image(tmp_path: Path, manifest: dict[str, object] | None) -> Path:
    image = tmp_path / "image"
    image.mkdir()
    (image / "vmlinux").write_bytes(b"\x7fELF")
    (image / "initrd.img").write_bytes(b"")
    if manifest is not None:
        (image / "manifest.json").write_text(json.dumps(manifest))
    return image


@pytest.mark.parametrize(("manifest", "console"), [
    ({"console": "ttyS0,9600"}, "ttyS0,9600"),
    ({"console": "ttyS1,57600"}, "ttyS1,57600"),
    (None, "ttyS0,115200"),  # an image without a manifest: the default
    ({"console": 5}, "ttyS0,115200"),  # a damaged one: the default, not a crash
])
def test_the_lab_boots_at_the_images_console_speed(tmp_path: Path,
                                                   manifest: dict[str, object] | None,
                                                   console: str) -> None:
    image = _image(tmp_path, manifest)
    assert image_console(image) == console
    vm = Vm(image, [Nic(Mac.parse("52:54:00:12:34:56"))], log=tmp_path / "log",
            accelerator="tcg")
    argv = vm.argv(tmp_path / "qmp.sock")
    append = argv[argv.index("-append") + 1].split()
    assert f"console={console}" in append and f"bootpull.console={console}" in append
