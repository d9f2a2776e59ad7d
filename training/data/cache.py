"""On-disk cache of preprocessed arrays, keyed by the source file's content and the preprocessing.

One ``.npz`` per (source file, loader settings). The file name carries a hash of the source's path and
the loader tag (so that stale entries of the same source and settings can be removed) and a hash of (content SHA-256, loader tag,
``PREPROCESS_VERSION``): editing the source, changing the loader settings or bumping the version all
miss the cache. Writes go to a temporary file in the cache folder and are ``os.replace``d into place,
so an interrupted run never leaves a half-written entry; reads use ``allow_pickle=False``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from engine.files import atomic_file, file_sha256

from .clip import PREPROCESS_VERSION


def cache_key(source: str | Path, tag: str) -> tuple[str, str]:
    """(prefix naming the source path + tag, key naming its content + preprocessing) for ``source``."""
    source = Path(source)
    where = f"{source.resolve()}|{tag}".encode()
    prefix = f"{source.stem}-{hashlib.sha256(where).hexdigest()[:10]}"
    content = file_sha256(source)
    key = hashlib.sha256(f"{content}|{tag}|v{PREPROCESS_VERSION}".encode()).hexdigest()[:24]
    return prefix, key


def save_npz_atomic(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` (.npz) through a hidden temporary file in the same folder, renamed
    into place only when complete: an interrupted write never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def cached_arrays(
    cache_dir: str | Path | None,
    source: str | Path,
    tag: str,
    compute: Callable[[], dict[str, np.ndarray]],
) -> dict[str, np.ndarray]:
    """Arrays derived from ``source`` by ``compute()``, read from ``cache_dir`` when already there.

    ``tag`` must name everything besides the file content that changes the result (loader and its
    settings). With ``cache_dir=None`` this simply calls ``compute()``.
    """
    if cache_dir is None:
        return compute()
    cache_dir = Path(cache_dir)
    prefix, key = cache_key(source, tag)
    entry = cache_dir / f"{prefix}-{key}.npz"
    if entry.exists():
        try:
            with np.load(entry, allow_pickle=False) as z:
                return {name: z[name] for name in z.files}
        except (OSError, ValueError, EOFError):
            pass  # unreadable entry (e.g. disk trouble): recompute and overwrite it
    arrays = compute()
    save_npz_atomic(entry, arrays)
    # Entries of the same source and settings made from older content (or an older preprocessing
    # version) can never be hit again.
    for old in cache_dir.glob(f"{prefix}-*.npz"):
        if old != entry and _same_tag_family(old.name, prefix):
            old.unlink(missing_ok=True)
    return arrays


def _same_tag_family(name: str, prefix: str) -> bool:
    # ``prefix-<24 hex>.npz``: exactly one more dash-separated field after the prefix.
    rest = name[len(prefix) + 1 : -len(".npz")]
    return len(rest) == 24 and all(c in "0123456789abcdef" for c in rest)
