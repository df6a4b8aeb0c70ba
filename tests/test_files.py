"""Atomic writes."""

from __future__ import annotations

import pytest

from atari_dqn.run.files import atomic_write, atomic_write_text


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "rewards.txt"
    atomic_write_text(path, "old\n")

    def failing(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(path, failing)
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["rewards.txt"]


def test_atomically_written_files_get_the_mode_open_gives(tmp_path):
    """Issue 12, defect 15: they were 0600 (mkstemp's mode), snapshots 0644."""
    import os
    import stat

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        os.umask(0o027)
        atomic_write_text(tmp_path / "b.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b.txt").stat().st_mode) == 0o640


def test_a_full_disk_is_a_disk_error_naming_the_file(tmp_path, monkeypatch):
    import errno
    from pathlib import Path

    from atari_dqn.config import RunError
    from atari_dqn.run.files import DiskError, atomic_torch_save

    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    atomic_write_text(tmp_path / "model.pt", "old")
    with pytest.raises(DiskError) as caught:
        atomic_torch_save(tmp_path / "model.pt", {"x": 1})
    assert isinstance(caught.value, RunError)
    assert str(caught.value) == f"cannot write {tmp_path / 'model.pt'}: No space left on device"
    assert (tmp_path / "model.pt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]
