"""Read an MP4's streams (kind, codec, duration) from its atoms: no ffprobe needed.

Enough of ISO/IEC 14496-12 to check a render: ``moov/trak/mdia/{mdhd,hdlr,minf/stbl/stsd}``.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

_KINDS = {b"vide": "video", b"soun": "audio", b"text": "text", b"sbtl": "subtitle"}


@dataclass(frozen=True)
class Mp4Stream:
    kind: str  # "video", "audio", ... (from the handler type)
    codec: str  # sample entry format, e.g. "avc1", "mp4a"
    duration_s: float


def _atoms(data: bytes, start: int, end: int):
    """Yield (type, payload_start, atom_end) for each atom in data[start:end]."""
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        header = 8
        if size == 1:
            size = struct.unpack(">Q", data[pos + 8:pos + 16])[0]
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise ValueError(f"corrupt MP4 atom {kind!r} at byte {pos}")
        yield kind, pos + header, pos + size
        pos += size


def _find(data: bytes, start: int, end: int, path: list[bytes]) -> tuple[int, int] | None:
    for kind, payload, atom_end in _atoms(data, start, end):
        if kind == path[0]:
            return (payload, atom_end) if len(path) == 1 else _find(data, payload, atom_end, path[1:])
    return None


def mp4_streams(path: str | os.PathLike[str]) -> list[Mp4Stream]:
    """The streams of the MP4 at ``path``; raises ValueError when it is not a readable MP4."""
    with open(path, "rb") as f:
        data = f.read()
    moov = _find(data, 0, len(data), [b"moov"])
    if moov is None:
        raise ValueError(f"{path} has no 'moov' atom (not an MP4, or not finished)")
    streams = []
    for kind, payload, atom_end in _atoms(data, *moov):
        if kind != b"trak":
            continue
        mdhd = _find(data, payload, atom_end, [b"mdia", b"mdhd"])
        hdlr = _find(data, payload, atom_end, [b"mdia", b"hdlr"])
        stsd = _find(data, payload, atom_end, [b"mdia", b"minf", b"stbl", b"stsd"])
        if mdhd is None or hdlr is None or stsd is None:
            raise ValueError(f"{path}: a track lacks mdhd/hdlr/stsd")
        version = data[mdhd[0]]
        if version == 1:
            timescale, duration = struct.unpack(">IQ", data[mdhd[0] + 20:mdhd[0] + 32])
        else:
            timescale, duration = struct.unpack(">II", data[mdhd[0] + 12:mdhd[0] + 20])
        handler = data[hdlr[0] + 8:hdlr[0] + 12]
        codec = data[stsd[0] + 12:stsd[0] + 16].decode("latin-1")
        streams.append(
            Mp4Stream(kind=_KINDS.get(handler, handler.decode("latin-1")), codec=codec,
                      duration_s=duration / timescale if timescale else 0.0)
        )
    return streams
