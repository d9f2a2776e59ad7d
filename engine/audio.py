"""Music features: the 438-d Bailando recipe, at 7.5 fps (GPT tokens) and 60 fps (beats).

Recipe (one column block per row, hop 512, centred frames, so ``1 + len(y) // 512`` frames):

    columns   block                                                      computed on
    0-19      MFCC (20) of the dB mel spectrogram (ref = max)            the audio
    20-39     MFCC delta (width 3)                                       the audio
    40-51     chroma CQT (12), 7 octaves at sr 30720, 5 otherwise        the harmonic part (HPSS)
    52        onset envelope (median over mel bands)                    the percussive part
    53        beat one-hot (``beat_track`` on that envelope)             -
    54-437    tempogram (384) of that envelope                           -

At sr 3840 a frame is 1/7.5 s (one motion token); at sr 30720 it is 1/60 s (one motion frame).

Two feature modes for the 7.5 fps matrix:
- "official": what the released weights saw. With the librosa 0.8.1 the official code pins, the onset
  envelope at sr 3840 is identically zero, so columns 52-437 are all zero in every official feature
  file; we zero them too (and skip computing them).
- "full": the same recipe with live rhythm columns (librosa 0.11), for models trained here.
At 60 fps the official rhythm columns are live, so both modes give the same 60 fps matrix.

librosa 0.11 differs from 0.8.1 in its default padding (zeros instead of reflection at the song's
edges); we ask for reflection explicitly, which matches the official edge frames. Audio is downmixed by
averaging the channels and resampled with soxr "HQ", as close to essentia's MonoLoader as we measured.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import (
    AudioDecodeError,
    AudioError,
    AudioFileNotFoundError,
    AudioTooLongError,
    AudioTooShortError,
    InvalidOptionError,
    NotAudioError,
    SilentAudioError,
)
from .files import atomic_file, file_sha256

log = logging.getLogger(__name__)

# --- the recipe's constants ---------------------------------------------------------------------------
FEATURE_DIM = 438
BEAT_COLUMN = 53
HOP_LENGTH = 512
TOKEN_SR = 3840  # 3840 / 512 = 7.5 frames per second
BEAT_SR = 30720  # 30720 / 512 = 60 frames per second
FEATURE_MODES = ("official", "full")  # see the module docstring

MFCC_COLUMNS = slice(0, 20)
DELTA_COLUMNS = slice(20, 40)
CHROMA_COLUMNS = slice(40, 52)
ONSET_COLUMN = 52
TEMPOGRAM_COLUMNS = slice(54, 438)
RHYTHM_COLUMNS = slice(52, 438)  # zero at 7.5 fps in "official" mode

# Bump when the numbers a cache entry holds would change (recipe, resampler, padding).
FEATURE_VERSION = 1

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

ProgressFn = Callable[[float, str], None]




@dataclass(frozen=True)
class MusicFeatures:
    """Features of one song.

    features:      (N, 438) float32 at 7.5 fps, N = 1 + samples_at_3840 // 512.
    beats:         (K,) int64 beat frame indices at 60 fps (official 60 fps recipe), or None when
                   extracted with ``with_beats=False``.
    duration_s:    length of the decoded song in seconds.
    mode:          "official" or "full".
    source_path:   the song file.
    content_hash:  sha256 (hex) of the file's bytes.
    """

    features: np.ndarray
    beats: np.ndarray | None
    duration_s: float
    mode: str
    source_path: str
    content_hash: str

    @property
    def num_frames(self) -> int:
        return int(self.features.shape[0])


# =====================================================================================================
# Loading
# =====================================================================================================
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


# =====================================================================================================
# HPSS with a fast running median
# =====================================================================================================
# librosa's HPSS takes two median filters of the magnitude spectrogram (31 frames along time, 31 bins
# along frequency) through scipy.ndimage: ~11 s of CPU for a 3-minute song at sr 30720, most of the
# beat path. A sorted-window running median (numba, no GIL, rows split over threads) gives the identical
# numbers about 8x faster, and the soft masks are fused into one pass: the whole HPSS measured 3.0 s of
# CPU against 16.5 s for librosa.effects.hpss (benchmarks/bench_features.py --baseline).
_MEDIAN_WIDTH = 31
_THREADS = max(1, min(4, os.cpu_count() or 1))
_kernels: dict[str, Callable] | None = None


def _running_median_rows(padded: np.ndarray, width: int, out: np.ndarray) -> None:
    """Median of every ``width``-long window of each row. padded: (R, N + width - 1), out: (R, N)."""
    n_rows, n_out = out.shape
    half = width // 2
    window = np.empty(width, dtype=padded.dtype)
    for r in range(n_rows):
        row = padded[r]
        for i in range(width):
            window[i] = row[i]
        window.sort()
        out[r, 0] = window[half]
        for j in range(1, n_out):
            leaving = row[j - 1]
            entering = row[j + width - 1]
            # Find the leaving value (binary search), then slide the entering one into its sorted place.
            lo, hi = 0, width - 1
            while lo < hi:
                mid = (lo + hi) // 2
                if window[mid] < leaving:
                    lo = mid + 1
                else:
                    hi = mid
            pos = lo
            if entering > leaving:
                while pos + 1 < width and window[pos + 1] < entering:
                    window[pos] = window[pos + 1]
                    pos += 1
            else:
                while pos > 0 and window[pos - 1] > entering:
                    window[pos] = window[pos - 1]
                    pos -= 1
            window[pos] = entering
            out[r, j] = window[half]


def _soft_masks(
    harmonic: np.ndarray, percussive_t: np.ndarray, mask_h: np.ndarray, mask_p: np.ndarray
) -> None:
    """librosa.util.softmask(power=2, split_zeros=True) for both parts in one pass.

    harmonic, mask_h, mask_p: (F, T); percussive_t: (T, F). Each pair is rescaled by its larger value so
    squaring tiny float32 values cannot underflow; where both are ~0 each mask is 0.5."""
    n_bins, n_frames = harmonic.shape
    tiny = np.finfo(harmonic.dtype).tiny
    for f in range(n_bins):
        for t in range(n_frames):
            h = harmonic[f, t]
            p = percussive_t[t, f]
            scale = max(h, p)
            if scale < tiny:
                mask_h[f, t] = 0.5
                mask_p[f, t] = 0.5
            else:
                h = (h / scale) ** 2
                p = (p / scale) ** 2
                mask_h[f, t] = h / (h + p)
                mask_p[f, t] = p / (h + p)


def _get_kernels() -> dict[str, Callable] | None:
    """The numba-compiled kernels (disk-cached when the folder is writable), or None without numba."""
    global _kernels
    if _kernels is None:
        try:
            import numba
        except ImportError:  # librosa depends on numba, so this is unexpected
            return None
        probe = np.zeros((2, _MEDIAN_WIDTH + 1), dtype=np.float32)
        for cache in (True, False):  # caching needs a writable folder; compile in memory otherwise
            try:
                median = numba.njit(cache=cache, nogil=True)(_running_median_rows)
                masks = numba.njit(cache=cache, nogil=True)(_soft_masks)
                median(probe, _MEDIAN_WIDTH, np.empty((2, 2), dtype=np.float32))
                masks(probe, probe.T.copy(), np.empty_like(probe), np.empty_like(probe))
                _kernels = {"median": median, "masks": masks}
                break
            except Exception:  # any numba failure means "use the numpy/scipy fallback"
                continue
    return _kernels


def _median_rows(S: np.ndarray, width: int, pool: ThreadPoolExecutor | None) -> np.ndarray:
    """Running median along the last axis of S (R, N), reflected edges (= scipy.ndimage 'reflect')."""
    kernels = _get_kernels()
    if kernels is None:
        from scipy.ndimage import median_filter

        return median_filter(S, size=(1, width), mode="reflect")
    half = width // 2
    padded = np.pad(S, ((0, 0), (half, half)), mode="symmetric")  # (R, N + width - 1), C-contiguous
    out = np.empty(S.shape, dtype=S.dtype)
    if pool is None:
        kernels["median"](padded, width, out)
        return out
    bounds = np.linspace(0, S.shape[0], _THREADS + 1).astype(int)
    jobs = [
        pool.submit(kernels["median"], padded[a:b], width, out[a:b]) for a, b in zip(bounds[:-1], bounds[1:])
    ]
    for job in jobs:
        job.result()
    return out


def hpss_masks(D: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Soft masks (power 2, margin 1) of librosa's median-filtering HPSS for an STFT D: 2 x (F, T)."""
    S = np.abs(D)  # (F, T)
    with ThreadPoolExecutor(_THREADS) as pool:
        harmonic = _median_rows(np.ascontiguousarray(S), _MEDIAN_WIDTH, pool)  # (F, T): along time
        percussive_t = _median_rows(np.ascontiguousarray(S.T), _MEDIAN_WIDTH, pool)  # (T, F): along freq
    kernels = _get_kernels()
    mask_h = np.empty(S.shape, dtype=S.dtype)
    mask_p = np.empty(S.shape, dtype=S.dtype)
    if kernels is not None:
        kernels["masks"](harmonic, percussive_t, mask_h, mask_p)
        return mask_h, mask_p
    import librosa

    percussive = percussive_t.T
    return (
        librosa.util.softmask(harmonic, percussive, power=2, split_zeros=True),
        librosa.util.softmask(percussive, harmonic, power=2, split_zeros=True),
    )


def hpss(y: np.ndarray, *, harmonic: bool = True, percussive: bool = True) -> tuple:
    """(harmonic, percussive) waveforms like ``librosa.effects.hpss(y)`` with reflected edges; a part
    not asked for is None (its inverse STFT is skipped)."""
    import librosa

    D = librosa.stft(y, n_fft=2048, hop_length=HOP_LENGTH, pad_mode="reflect")  # (1025, T)
    mask_h, mask_p = hpss_masks(D)
    parts = []
    for wanted, mask in ((harmonic, mask_h), (percussive, mask_p)):
        parts.append(
            librosa.istft(D * mask, hop_length=HOP_LENGTH, length=y.shape[-1], dtype=y.dtype)
            if wanted
            else None
        )
    return parts[0], parts[1]


# =====================================================================================================
# The recipe
# =====================================================================================================
def _num_frames(num_samples: int) -> int:
    return 1 + num_samples // HOP_LENGTH


def _timbre_block(y: np.ndarray, sr: int) -> np.ndarray:
    """MFCC and MFCC delta: (40, T)."""
    import librosa

    mel = librosa.feature.melspectrogram(y=y, sr=sr, hop_length=HOP_LENGTH, pad_mode="reflect")  # (128, T)
    mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel, ref=np.max))  # (20, T)
    delta = librosa.feature.delta(mfcc, width=3)  # (20, T)
    return np.concatenate([mfcc, delta], axis=0)


def _chroma_block(harmonic: np.ndarray, sr: int) -> np.ndarray:
    """Chroma CQT of the harmonic part: (12, T). chroma_cqt itself cannot take pad_mode, so the CQT
    is computed here with reflected edges and handed to it."""
    import librosa

    n_octaves = 7 if sr == BEAT_SR else 5  # the official rule
    bins_per_octave = 36
    tuning = librosa.estimate_tuning(y=harmonic, sr=sr, bins_per_octave=bins_per_octave)
    C = np.abs(
        librosa.cqt(
            y=harmonic,
            sr=sr,
            hop_length=HOP_LENGTH,
            n_bins=n_octaves * bins_per_octave,
            bins_per_octave=bins_per_octave,
            tuning=tuning,
            pad_mode="reflect",
        )
    )  # (n_octaves * 36, T)
    return librosa.feature.chroma_cqt(C=C, sr=sr, hop_length=HOP_LENGTH, n_octaves=n_octaves)


def _rhythm_block(
    percussive: np.ndarray, sr: int, *, tempogram: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Onset envelope, beat one-hot and tempogram of the percussive part: (386, T) (or (2, T) without
    the tempogram), and the beat frame indices (K,)."""
    import librosa

    envelope = librosa.onset.onset_strength(
        y=percussive, sr=sr, hop_length=HOP_LENGTH, aggregate=np.median, pad_mode="reflect"
    )  # (T,)
    _, beats = librosa.beat.beat_track(onset_envelope=envelope, sr=sr, hop_length=HOP_LENGTH)
    beats = np.asarray(beats, dtype=np.int64)
    one_hot = np.zeros_like(envelope)
    one_hot[beats] = 1.0
    rows = [envelope[None], one_hot[None]]
    if tempogram:
        rows.append(librosa.feature.tempogram(onset_envelope=envelope, sr=sr, hop_length=HOP_LENGTH))
    return np.concatenate(rows, axis=0), beats


def compute_features(y: np.ndarray, sr: int, *, rhythm: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """The 438-d recipe on audio ``y`` at ``sr``: ((T, 438) float32, beat frames or None).

    rhythm=False leaves columns 52-437 zero (the official 7.5 fps distribution) and skips their cost.
    """
    frames = _num_frames(y.shape[0])
    harmonic, percussive = hpss(y, harmonic=True, percussive=rhythm)
    features = np.zeros((frames, FEATURE_DIM), dtype=np.float32)  # (T, 438)
    features[:, :40] = _timbre_block(y, sr).T
    features[:, CHROMA_COLUMNS] = _chroma_block(harmonic, sr).T
    beats = None
    if rhythm:
        block, beats = _rhythm_block(percussive, sr)
        features[:, RHYTHM_COLUMNS] = block.T
    return features, beats


def compute_beats(y: np.ndarray, sr: int = BEAT_SR) -> np.ndarray:
    """Beat frame indices from the official recipe (percussive onset envelope + beat_track): (K,) int64.

    Only the percussive waveform is resynthesised and no tempogram or chroma is computed: at 60 fps
    that is all the beats need."""
    _, percussive = hpss(y, harmonic=False, percussive=True)
    _, beats = _rhythm_block(percussive, sr, tempogram=False)
    return beats


# =====================================================================================================
# Cache
# =====================================================================================================
def default_cache_dir() -> Path:
    env = os.environ.get("DANCE_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "bailando-blender" / "features"


def _resolve_cache_dir(cache_dir: str | os.PathLike | bool | None) -> Path | None:
    if cache_dir is False:
        return None
    if cache_dir is None or cache_dir is True:
        return default_cache_dir()
    return Path(cache_dir)


def _cache_path(cache_dir: Path, content_hash: str, kind: str) -> Path:
    return cache_dir / f"{content_hash[:40]}-{kind}-v{FEATURE_VERSION}.npz"


# What each kind of cache entry holds: (sample rate its frames count at, feature columns or None for beats).
_ENTRY_KINDS = {"tokens": (TOKEN_SR, FEATURE_DIM), "frames60": (BEAT_SR, FEATURE_DIM), "beats": (BEAT_SR, None)}
# How far an entry's song duration may differ from the header's (decoders differ by a few ms at the ends).
_DURATION_SLACK_S = 0.1


def _header_duration(path: Path) -> float | None:
    """The song's duration from its header alone (no decoding), or None when the header does not say."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception:
        return None
    return info.duration if 0 < info.frames < _UNKNOWN_FRAMES and info.samplerate > 0 else None


def _entry_problem(entry: dict, kind: str, header_duration_s: float | None) -> str | None:
    """Why a cache entry cannot be what this song gives (shape, frame count for its duration, dtype,
    finite values, beats inside the song), or None when it can."""
    sr, columns = _ENTRY_KINDS[kind]
    values, duration = entry["values"], float(entry["duration_s"])
    if not (np.isfinite(duration) and duration > 0):
        return f"duration {duration}"
    if header_duration_s is not None and abs(duration - header_duration_s) > _DURATION_SLACK_S:
        return f"duration {duration:.3f} s for a song of {header_duration_s:.3f} s"
    frames = _num_frames(int(round(duration * sr)))  # frames of the song at this rate (+-1: resampling)
    if columns is not None:
        if values.dtype != np.float32 or values.ndim != 2 or values.shape[1] != columns:
            return f"values {values.dtype} {values.shape}, expected float32 (N, {columns})"
        if abs(values.shape[0] - frames) > 1:
            return f"{values.shape[0]} frames for a {duration:.2f} s song ({frames} expected)"
        if not np.all(np.isfinite(values)):
            return "non-finite values"
        return None
    if values.ndim != 1 or values.dtype.kind not in "iu":
        return f"beats {values.dtype} {values.shape}, expected integer frame indices (K,)"
    if values.size and (values.min() < 0 or values.max() > frames or np.any(np.diff(values) <= 0)):
        return f"beat frames outside 0..{frames} or out of order"
    return None


def _cache_read(path: Path | None, content_hash: str, kind: str, header_duration_s: float | None) -> dict | None:
    """The arrays of a cache entry, or None when absent or unusable: an entry that is unreadable, misses a
    key, or cannot be what this song gives (``_entry_problem``) is ignored, so it is recomputed and
    overwritten (healed)."""
    if path is None or not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            entry = {name: npz[name] for name in ("content_hash", "version", "values", "duration_s")}
        if str(entry["content_hash"]) != content_hash or int(entry["version"]) != FEATURE_VERSION:
            return None
        problem = _entry_problem(entry, kind, header_duration_s)
    except Exception as exc:  # any unreadable entry is recomputed and rewritten
        problem = f"{type(exc).__name__}: {exc}"
    if problem is not None:
        log.warning("ignoring feature cache entry %s (%s); recomputing it", path, problem)
        return None
    return entry


def _cache_write(path: Path | None, content_hash: str, **arrays: np.ndarray) -> None:
    """Write an entry atomically (temp file in the same folder, then os.replace); a cache that cannot
    be written only costs speed, so failures are logged, not raised."""
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, content_hash=np.array(content_hash), version=np.array(FEATURE_VERSION), **arrays)
    except OSError as exc:
        log.warning("could not write feature cache entry %s (%s)", path, exc)


# =====================================================================================================
# Public entry points
# =====================================================================================================
def _check_mode(mode: str) -> None:
    if mode not in FEATURE_MODES:
        raise InvalidOptionError(f"Unknown feature mode {mode!r}; use one of {', '.join(FEATURE_MODES)}.")


class _Song:
    """A song decoded once and resampled on demand (both rates come from the native audio, as the
    official extractor loads the file once per rate)."""

    def __init__(self, path: Path, min_duration_s: float, max_duration_s: float) -> None:
        self.mono, self.native_sr = _decode(path, max_duration_s)
        _check_content(self.mono, self.native_sr, path.name, min_duration_s)
        self.duration_s = self.mono.shape[0] / self.native_sr

    def at(self, sr: int) -> np.ndarray:
        return _resample(self.mono, self.native_sr, sr)


def _report(progress: ProgressFn | None, fraction: float, message: str) -> None:
    if progress is not None:
        progress(fraction, message)


def _start_request(
    path: str | os.PathLike, mode: str, cache_dir: str | os.PathLike | bool | None, progress: ProgressFn | None
) -> tuple[Path, str, Path | None]:
    """Check the mode and the song file, then identify the song for the cache:
    (path, content hash, cache folder or None for no cache)."""
    _check_mode(mode)
    path = check_song_file(path)
    _report(progress, 0.0, "reading the song")
    return path, file_sha256(path), _resolve_cache_dir(cache_dir)


def extract_features(
    path: str | os.PathLike,
    mode: str = "official",
    *,
    with_beats: bool = True,
    cache_dir: str | os.PathLike | bool | None = None,
    progress: ProgressFn | None = None,
    min_duration_s: float = MIN_DURATION_S,
    max_duration_s: float = MAX_DURATION_S,
) -> MusicFeatures:
    """The 7.5 fps features of a song (and its 60 fps beats), cached on disk by content.

    cache_dir: None = ``$DANCE_CACHE_DIR`` or ``~/.cache/bailando-blender/features``; False = no cache.
    progress: optional ``progress(fraction, message)``.
    """
    path, content_hash, folder = _start_request(path, mode, cache_dir, progress)
    token_entry_path = _cache_path(folder, content_hash, f"tokens-{mode}") if folder else None
    beats_entry_path = _cache_path(folder, content_hash, "beats") if folder else None

    header_duration = _header_duration(path) if folder else None
    token_entry = _cache_read(token_entry_path, content_hash, "tokens", header_duration)
    beats_entry = _cache_read(beats_entry_path, content_hash, "beats", header_duration) if with_beats else None
    if token_entry is not None and float(token_entry["duration_s"]) > max_duration_s:
        token_entry = None  # let the decoder report the limit
    song = None
    if token_entry is None or (with_beats and beats_entry is None):
        song = _Song(path, min_duration_s, max_duration_s)

    with ThreadPoolExecutor(1) as background:
        # The 60 fps beat path is independent of the 7.5 fps features: run it alongside (its heavy parts
        # release the GIL), so the two take about as long as the slower one on a multi-core machine.
        beats_job = None
        if with_beats and beats_entry is None:
            _report(progress, 0.1, "finding beats (60 fps)")
            beats_job = background.submit(compute_beats, song.at(BEAT_SR), BEAT_SR)

        if token_entry is not None:
            features, duration_s = token_entry["values"].astype(np.float32), float(token_entry["duration_s"])
        else:
            _report(progress, 0.2, "computing 7.5 fps features")
            features, _ = compute_features(song.at(TOKEN_SR), TOKEN_SR, rhythm=(mode == "full"))
            duration_s = song.duration_s
            _cache_write(token_entry_path, content_hash, values=features, duration_s=np.array(duration_s))

        beats = None
        if beats_entry is not None:
            beats = beats_entry["values"].astype(np.int64)
        elif beats_job is not None:
            _report(progress, 0.6, "finding beats (60 fps)")
            beats = beats_job.result()
            _cache_write(beats_entry_path, content_hash, values=beats, duration_s=np.array(song.duration_s))
    _report(progress, 1.0, "music features ready")
    return MusicFeatures(
        features=features,
        beats=beats,
        duration_s=duration_s,
        mode=mode,
        source_path=str(path),
        content_hash=content_hash,
    )


def features_60fps(
    path: str | os.PathLike,
    mode: str = "official",
    *,
    cache_dir: str | os.PathLike | bool | None = None,
    progress: ProgressFn | None = None,
    min_duration_s: float = MIN_DURATION_S,
    max_duration_s: float = MAX_DURATION_S,
) -> np.ndarray:
    """The full 438-d matrix at 60 fps (sr 30720): (M, 438) float32, M = 1 + samples // 512.

    Column 53 holds the beats (``extract_features(...).beats``). Both modes give the same matrix: the
    official 60 fps features have live rhythm columns; ``mode`` is validated for symmetry.
    """
    path, content_hash, folder = _start_request(path, mode, cache_dir, progress)
    entry_path = _cache_path(folder, content_hash, "frames60") if folder else None
    entry = _cache_read(entry_path, content_hash, "frames60", _header_duration(path) if folder else None)
    if entry is not None and float(entry["duration_s"]) <= max_duration_s:
        _report(progress, 1.0, "music features ready")
        return entry["values"].astype(np.float32)
    song = _Song(path, min_duration_s, max_duration_s)
    _report(progress, 0.1, "computing 60 fps features")
    features, beats = compute_features(song.at(BEAT_SR), BEAT_SR, rhythm=True)
    _cache_write(entry_path, content_hash, values=features, duration_s=np.array(song.duration_s))
    if folder is not None:  # the beats come for free here: save them for extract_features
        beats_path = _cache_path(folder, content_hash, "beats")
        if _cache_read(beats_path, content_hash, "beats", song.duration_s) is None:
            _cache_write(beats_path, content_hash, values=beats, duration_s=np.array(song.duration_s))
    _report(progress, 1.0, "music features ready")
    return features
