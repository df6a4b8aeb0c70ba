"""Atomic file writes: a reader (or a resumed run) sees the old file or the new one, never half.

Every file a run writes goes through here or through writing(), so that a failed write (a full
disk, a missing permission, an I/O error) is one DiskError naming the file and its cause.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from atari_dqn.config import RunError

FILE_MODE = 0o666  # before the umask, as open() creates files (0644 with the usual umask 022)


class DiskError(RunError):
    """A file of the run could not be written; the message names the file and the cause."""

    def __init__(self, path: Path | str, error: OSError) -> None:
        cause = os.strerror(error.errno) if error.errno else str(error)
        super().__init__(f"cannot write {path}: {cause}")
        self.path, self.errno, self.cause = Path(path), error.errno, cause


@contextmanager
def writing(path: Path | str) -> Iterator[None]:
    """An OSError inside becomes a DiskError naming path."""
    try:
        yield
    except OSError as e:
        raise DiskError(path, e) from None


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """write(tmp) fills a temporary file in path's folder, which then replaces path. The file
    gets the mode open() would give it (mkstemp's own is 0600)."""
    path = Path(path)
    with writing(path):
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp.",
                                   suffix=path.suffix)
        try:
            try:
                os.fchmod(fd, FILE_MODE & ~_umask())
            finally:
                os.close(fd)
            write(Path(tmp))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def atomic_torch_save(path: Path, obj: Any) -> None:
    # Serialized in memory first: torch.save writing a file itself reports a full disk as
    # "RuntimeError: [enforce fail at inline_container.cc]", a plain write as OSError(ENOSPC).
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write(path, lambda tmp: tmp.write_bytes(buffer.getbuffer()))
