"""The state directory's atomic writer: all of the new bytes or none of them."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from bootpull.state import write_atomic
from bootpull.trust import Floor, load_floor, save_floor


def disk_full(fd: int) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "status.json"
    write_atomic(path, b"old\n")
    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError):
        write_atomic(path, b"new\n")
    monkeypatch.undo()
    assert path.read_bytes() == b"old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]


def test_a_failed_floor_write_keeps_the_old_floor_and_leaves_no_temp_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = Floor(1, 5, 5, 4, "2026-01-01T00:00:00+00:00")
    save_floor(tmp_path, old)
    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError):
        save_floor(tmp_path, Floor(2, 6, 6, 5, "2026-02-01T00:00:00+00:00"))
    monkeypatch.undo()
    assert load_floor(tmp_path) == old
    assert [p.name for p in (tmp_path / "trust").iterdir()] == ["floor.json"]
