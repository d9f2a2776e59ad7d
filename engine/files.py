"""Writing files the way users expect: all or nothing, with ordinary permissions.

Every file a user gets is first written to a hidden temporary file in its final folder (same file
system, so ``os.replace`` swaps it in atomically) and renamed into place once complete; on failure or
interruption the temporary file is removed. ``tempfile.mkstemp`` creates files readable by their owner
only (0600); ``new_temp_file`` gives them the permissions of the user's umask (0644 for the usual 022),
like any file the user writes.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import OutputError

_UMASK_LOCK = threading.Lock()




def current_umask() -> int:
    """The process's umask (reading it means setting it; the lock keeps threads from seeing 0)."""
    with _UMASK_LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def new_temp_file(directory: str | os.PathLike[str], suffix: str = "", prefix: str = ".partial-") -> Path:
    """An empty hidden file in ``directory`` with the umask's permissions, for writing then ``os.replace``."""
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=directory)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
    finally:
        os.close(fd)
    return Path(name)


@contextmanager
def atomic_file(target: str | os.PathLike[str]) -> Iterator[Path]:
    """A hidden temporary file beside ``target`` (umask permissions) to write; renamed onto ``target`` when
    the block ends normally, removed when it raises (or is interrupted). The folder must exist."""
    with atomic_files([target]) as (tmp,):
        yield tmp


@contextmanager
def atomic_files(targets: list[str | os.PathLike[str]]) -> Iterator[tuple[Path, ...]]:
    """``atomic_file`` for files that belong together: one temporary file per target, all renamed into
    place once the block ends normally (the renames come last, so they all happen or none is started)."""
    temps: list[Path] = []
    try:
        for target in map(Path, targets):
            temps.append(new_temp_file(target.parent, suffix=target.suffix or ".tmp", prefix=f".{target.stem}.partial-"))
        yield tuple(temps)
        for tmp, target in zip(temps, targets):
            os.replace(tmp, target)
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes (the key of everything cached from a file)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_output_folder(path: str | os.PathLike[str]) -> Path:
    """``path`` as an output folder that can be written, checked before any work: it is a folder (or can
    be created as one: no part of it is a file) and a file can be created in it (or in the folder it
    would be made in). Creates nothing; raises ``OutputError`` saying what is wrong."""
    out = Path(path).expanduser().absolute()
    existing = out
    while not existing.exists():
        if existing.is_symlink():
            raise OutputError(f"output folder {out}: {existing} is a broken link")
        existing = existing.parent
    if not existing.is_dir():
        if existing == out:
            raise OutputError(f"output folder {out} is a file, not a folder; choose a folder with -o")
        raise OutputError(f"output folder {out} cannot be made: {existing} is a file, not a folder")
    try:  # the real test (permissions, read-only mounts, root's exemptions): create and remove a file
        probe = new_temp_file(existing, prefix=".write-test-")
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"cannot write in {existing}: {exc.strerror or exc}; choose another output folder") from None
    return out

