"""Reading a song: the file checked before a byte is read, decoded (libsndfile) to mono float32 at its own
rate, checked (truncated, silent, too short or too long, non-finite or absurd samples) and resampled."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import numpy as np

from ..errors import (
    AudioDecodeError,
    AudioError,
    AudioFileNotFoundError,
    AudioTooLongError,
    AudioTooShortError,
    NotAudioError,
    SilentAudioError,
)

log = logging.getLogger(__name__)


# --- input limits ---------------------------------------------------------------------------------------
# 2 s: the beat tracker needs at least two beats at the slowest common tempo (60 bpm = 1 beat/s) to find
# a tempo, and 2 s gives 15 tokens (a short but real dance). Shorter input gives no usable rhythm.
MIN_DURATION_S = 2.0
# 15 min: a 15-minute song already needs ~1.4 GB for its 60 fps spectrograms; longer input is most
# likely a mix or a whole album and should be cut into songs first.
MAX_DURATION_S = 15 * 60.0
# Below -60 dBFS RMS (over the whole song) there is no music to dance to: ordinary songs sit around
# -20..-10 dBFS and quiet classical recordings around -35 dBFS; -60 dBFS is hiss or dither, which the
# max-referenced dB features would blow up into random "music".
SILENCE_DBFS = -60.0

# Samples beyond this magnitude (24 dB above full scale, far past any float mix's headroom or a lossy
# decoder's overshoot) are scaled down to full scale before anything is computed.
MAX_PEAK = 16.0
# A decoded length this much shorter than the header's (or 1 %) is a truncated file, not codec padding.
_TRUNCATION_SLACK_S = 0.05
_UNKNOWN_FRAMES = 2**62  # libsndfile's "unknown length" is SF_COUNT_MAX (2^63 - 1)
_BLOCK_FRAMES = 1 << 18
_OGG_TAIL_BYTES = 70_000  # an Ogg page is at most 65,307 bytes

AUDIO_EXTENSIONS = (".wav", ".wave", ".mp3", ".ogg", ".oga", ".flac", ".aif", ".aiff")

# How the first bytes of each container look (for telling "not audio" from "broken audio").
_AUDIO_MAGIC = (b"RIFF", b"RF64", b"BW64", b"OggS", b"fLaC", b"ID3", b"FORM")
_OTHER_MAGIC = {
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"%PDF": "a PDF document",
    b"PK\x03\x04": "a ZIP archive",
}


def _file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a regular file"


def check_song_file(path: str | os.PathLike) -> Path:
    """``path`` as a Path once it is known to be a song file that can be read to its end: it exists
    (a symlink counts by what it points to), is a regular file and has an audio extension.

    Checked from the file's metadata before a byte is read, so a named pipe or a link to /dev/zero is
    refused at once instead of being hashed forever. Raises AudioFileNotFoundError or NotAudioError.
    """
    path = Path(path)
    try:
        mode = path.stat().st_mode  # follows symlinks: a link is what it points to
    except FileNotFoundError:
        raise AudioFileNotFoundError(f"Song not found: '{path}'. Check the path and file name.") from None
    except OSError as exc:
        raise AudioError(f"Cannot read '{path}': {exc.strerror or exc}.") from exc
    if stat.S_ISDIR(mode):
        raise NotAudioError(f"'{path}' is a folder, not an audio file.")
    if not stat.S_ISREG(mode):
        raise NotAudioError(
            f"'{path}' is {_file_kind(mode)}, not a regular file: a song must be a .wav, .mp3, .ogg or .flac "
            "file on disk."
        )
    if path.suffix.lower() not in AUDIO_EXTENSIONS:
        raise NotAudioError(
            f"'{path.name}' is not a supported audio file ({path.suffix or 'no extension'}); "
            "use a .wav, .mp3, .ogg or .flac file."
        )
    return path


def _has_audio_magic(head: bytes) -> bool:
    if any(head.startswith(magic) for magic in _AUDIO_MAGIC):
        return True
    return len(head) > 1 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0  # MPEG frame sync (bare mp3)


def _known_non_audio(head: bytes) -> str | None:
    """What a file is when its first bytes say for sure that it is not audio, else None."""
    if not head:
        return "empty (0 bytes)"
    for magic, what in _OTHER_MAGIC.items():
        if head.startswith(magic):
            return what
    if not _has_audio_magic(head) and all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return "a text file"
    return None


def _check_wav_not_truncated(path: Path) -> None:
    """A WAV whose data chunk is shorter than its header declares is a truncated download."""
    with open(path, "rb") as f:
        header = f.read(12)
        if header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            return
        size = path.stat().st_size
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                return  # no data chunk: libsndfile reports that itself
            chunk_id, chunk_size = chunk[:4], int.from_bytes(chunk[4:], "little")
            if chunk_id == b"data":
                available = size - f.tell()
                # 0 and 0xFFFFFFFF mean "unknown" (streamed writers); a few missing bytes are tolerated.
                if 0 < chunk_size < 0xFFFFFFFF and available < chunk_size - 64:
                    raise AudioDecodeError(
                        f"'{path.name}' is truncated: its header declares {chunk_size} bytes of audio but "
                        f"the file holds {available}. Re-download or re-export the song."
                    )
                return
            f.seek(chunk_size + (chunk_size & 1), os.SEEK_CUR)


def _decode(path: Path, max_duration_s: float) -> tuple[np.ndarray, int]:
    """Decode a file to (mono float32 samples, native sample rate), refusing over-long input
    from the header before decoding anything."""
    import soundfile as sf

    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as exc:
        raise AudioError(
            f"Cannot read '{path}': {exc.strerror or exc}. Check the file's permissions."
        ) from exc
    what = _known_non_audio(head)
    if what is not None:
        raise NotAudioError(f"'{path.name}' is {what}, not audio. Choose a .wav, .mp3, .ogg or .flac song.")

    try:
        info = sf.info(str(path))
    except Exception as exc:  # libsndfile says "format not recognised", "malformed", ...
        if path.suffix.lower() == ".mp3" and "MP3" not in sf.available_formats():
            raise AudioDecodeError(
                f"This soundfile/libsndfile build cannot read MP3 ('{path.name}'); it needs libsndfile 1.1 or "
                "newer. Convert the song to .ogg, .flac or .wav, or upgrade soundfile."
            ) from exc
        if not _has_audio_magic(head):
            raise NotAudioError(
                f"'{path.name}' is not an audio file that can be read ({exc}). "
                "Choose a .wav, .mp3, .ogg or .flac song."
            ) from exc
        raise AudioDecodeError(
            f"'{path.name}' looks like audio but cannot be decoded ({exc}). The file may be corrupt or "
            "truncated: re-download it or convert it to .wav/.ogg."
        ) from exc

    # libsndfile reports 0 frames, or SF_COUNT_MAX, when the header does not say how long the audio is (a
    # streamed FLAC, an Ogg file cut short): such a file is decoded block by block up to the length limit.
    known_length = 0 < info.frames < _UNKNOWN_FRAMES
    if known_length and info.samplerate > 0 and info.duration > max_duration_s:
        raise AudioTooLongError(_too_long_message(path, info.duration, max_duration_s))
    if info.format == "WAV":
        _check_wav_not_truncated(path)
    if info.format == "OGG":
        _check_ogg_not_truncated(path)
    try:
        data = _read_samples(path, info.samplerate, None if known_length else max_duration_s)
    except AudioError:
        raise
    except Exception as exc:
        raise AudioDecodeError(
            f"'{path.name}' could not be decoded ({exc}). The file may be corrupt or truncated."
        ) from exc
    sr = int(info.samplerate)
    if data.shape[0] == 0:
        raise AudioDecodeError(f"'{path.name}' contains no audio samples (an empty or truncated file).")
    if known_length and data.shape[0] < info.frames - max(_TRUNCATION_SLACK_S * sr, 0.01 * info.frames):
        raise AudioDecodeError(
            f"'{path.name}' is truncated: its header declares {info.frames / sr:.1f} s of audio but only "
            f"{data.shape[0] / sr:.1f} s decode. Re-download or re-export the song."
        )
    if not np.all(np.isfinite(data)):
        raise AudioDecodeError(f"'{path.name}' contains invalid (NaN/inf) samples; re-export the song.")
    peak = float(np.abs(data).max())
    if peak > MAX_PEAK:
        # Float files may hold any finite value; squared in the spectrograms, 1e30 overflows float32.
        log.warning("'%s' peaks at %.3g, far above full scale (1.0): scaled down to full scale", path.name, peak)
        data *= np.float32(1.0 / peak)
    mono = data[:, 0].copy()  # (n,): channels averaged, as essentia's MonoLoader does
    for channel in range(1, data.shape[1]):
        mono += data[:, channel]
    mono *= np.float32(1.0 / data.shape[1])
    return mono, sr


def _too_long_message(path: Path, duration_s: float, max_duration_s: float) -> str:
    return (f"'{path.name}' lasts {duration_s / 60:.1f} min; the limit is {max_duration_s / 60:.0f} min. "
            "Cut the song (or the part you want danced) to a shorter file first.")


def _read_samples(path: Path, sr: int, max_duration_s: float | None) -> np.ndarray:
    """All samples (n, channels) float32; with ``max_duration_s`` (length unknown from the header) read
    block by block, refusing the file as soon as it runs past that length."""
    import soundfile as sf

    with sf.SoundFile(str(path)) as f:
        if max_duration_s is None:
            return f.read(dtype="float32", always_2d=True)
        limit = int(max_duration_s * sr)
        blocks, total, at_end = [], 0, False
        while not at_end:
            # NaN marks the rows not decoded: soundfile re-seeks to the read position after each read,
            # and libsndfile cannot seek to the very end of a stream whose header gives no length, so the
            # last block comes with an error although its samples were decoded.
            block = np.full((_BLOCK_FRAMES, f.channels), np.nan, dtype=np.float32)
            try:
                got = f.read(out=block).shape[0]
            except sf.LibsndfileError:
                decoded = ~np.isnan(block).all(axis=1)
                got, at_end = (int(np.argmin(decoded)) if not decoded.all() else _BLOCK_FRAMES), True
            if got == 0:
                break
            blocks.append(block[:got])
            total += got
            at_end = at_end or got < _BLOCK_FRAMES
            if total > limit:
                raise AudioTooLongError(_too_long_message(path, total / sr, max_duration_s) +
                                        " (its header does not say how long it is; it was read up to the limit)")
        if not blocks:
            return np.zeros((0, f.channels), dtype=np.float32)
        return np.concatenate(blocks)


def _check_ogg_not_truncated(path: Path) -> None:
    """An Ogg stream ends with a complete page flagged end-of-stream; a download cut short does not (and
    libsndfile then decodes the part it has without a word)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        f.seek(max(0, size - _OGG_TAIL_BYTES))
        tail = f.read()
    start = tail.rfind(b"OggS")
    complete = False
    if start >= 0 and len(tail) - start >= 27:
        header_type, n_segments = tail[start + 5], tail[start + 26]
        table = tail[start + 27 : start + 27 + n_segments]
        page_end = start + 27 + n_segments + sum(table)
        complete = len(table) == n_segments and page_end <= len(tail) and bool(header_type & 0x04)
    if not complete:
        raise AudioDecodeError(
            f"'{path.name}' is truncated: its last Ogg page is incomplete or does not end the stream. "
            "Re-download or re-export the song."
        )


def _check_content(mono: np.ndarray, sr: int, name: str, min_duration_s: float) -> None:
    duration = mono.shape[0] / sr
    if duration < min_duration_s:
        raise AudioTooShortError(
            f"'{name}' lasts {duration:.2f} s; at least {min_duration_s:g} s of music is needed to find "
            "its beat and make a dance. Use a longer song."
        )
    rms = float(np.sqrt(np.dot(mono, mono) / max(mono.shape[0], 1)))
    level = 20.0 * np.log10(max(rms, 1e-12))
    if level < SILENCE_DBFS:
        raise SilentAudioError(
            f"'{name}' is silent (level {level:.0f} dBFS, below {SILENCE_DBFS:.0f} dBFS): there is no music "
            "to dance to. Check the file plays, or raise its volume."
        )


def _resample(mono: np.ndarray, native_sr: int, sr: int) -> np.ndarray:
    if native_sr == sr:
        return mono
    import soxr

    return np.ascontiguousarray(soxr.resample(mono, native_sr, sr, quality="HQ"), dtype=np.float32)


def load_audio(
    path: str | os.PathLike,
    sr: int,
    *,
    min_duration_s: float = MIN_DURATION_S,
    max_duration_s: float = MAX_DURATION_S,
) -> np.ndarray:
    """Read a song as float32 mono at ``sr`` (channels averaged, soxr HQ resampling).

    Raises AudioFileNotFoundError, NotAudioError, AudioDecodeError, AudioTooLongError (checked from the
    header, before decoding), AudioTooShortError or SilentAudioError.
    """
    path = check_song_file(path)
    mono, native_sr = _decode(path, max_duration_s)
    _check_content(mono, native_sr, path.name, min_duration_s)
    return _resample(mono, native_sr, int(sr))


class _Song:
    """A song decoded once and resampled on demand (both rates come from the native audio, as the
    official extractor loads the file once per rate)."""

    def __init__(self, path: Path, min_duration_s: float, max_duration_s: float) -> None:
        self.mono, self.native_sr = _decode(path, max_duration_s)
        _check_content(self.mono, self.native_sr, path.name, min_duration_s)
        self.duration_s = self.mono.shape[0] / self.native_sr

    def at(self, sr: int) -> np.ndarray:
        return _resample(self.mono, self.native_sr, sr)
