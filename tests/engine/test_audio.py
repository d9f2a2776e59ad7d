"""Music features: agreement with the official extractor, real songs, beats, bad input, the cache."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from engine import audio
from engine.audio import decode, separation
from engine.clock import BEAT_FPS
from engine.errors import (
    AudioDecodeError,
    AudioFileNotFoundError,
    AudioTooLongError,
    AudioTooShortError,
    InvalidOptionError,
    NotAudioError,
    SilentAudioError,
)

BLOCKS_BOTH_RATES = {"mfcc": audio.MFCC_COLUMNS, "delta": audio.DELTA_COLUMNS, "chroma": audio.CHROMA_COLUMNS}
RHYTHM_BLOCKS = {"onset": slice(52, 53), "tempogram": audio.TEMPOGRAM_COLUMNS}


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    a = a.ravel() - a.mean()
    b = b.ravel() - b.mean()
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def write_wav(path: Path, samples: np.ndarray, sr: int, subtype: str = "PCM_16") -> Path:
    sf.write(str(path), samples, sr, subtype=subtype)
    return path


def noise(seconds: float, sr: int = 22050, seed: int = 0) -> np.ndarray:
    return (0.2 * np.random.default_rng(seed).standard_normal(int(seconds * sr))).astype(np.float32)


def click_track(bpm: float, seconds: float, sr: int, first_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Short decaying 1 kHz clicks every beat: (samples, click times in seconds)."""
    times = np.arange(first_s, seconds - 0.1, 60.0 / bpm)
    y = np.zeros(int(seconds * sr), dtype=np.float32)
    n = int(0.03 * sr)
    click = (np.sin(2 * np.pi * 1000 * np.arange(n) / sr) * np.exp(-np.arange(n) / (0.005 * sr))).astype(
        np.float32
    )
    for t in times:
        start = int(round(t * sr))
        y[start : start + n] += click[: len(y) - start]
    return 0.8 * y, times


# --- agreement with the official extractor ------------------------------------------------------------
@pytest.fixture(scope="module")
def golden(golden_dir: Path) -> dict:
    wav = golden_dir / "vibe_ace_excerpt_20s.wav"
    official = np.load(golden_dir / "official_features_vibe_ace_excerpt.npz")
    ours = audio.extract_features(wav, "official", with_beats=True, cache_dir=False)
    return {
        "official_7p5": official["features_7p5fps"],
        "official_60": official["features_60fps"],
        "ours": ours,
        "ours_60": audio.features_60fps(wav, "official", cache_dir=False),
    }


def test_golden_shapes(golden: dict) -> None:
    assert golden["ours"].features.shape == golden["official_7p5"].shape == (151, audio.FEATURE_DIM)
    assert golden["ours_60"].shape == golden["official_60"].shape == (1201, audio.FEATURE_DIM)
    assert golden["ours"].features.dtype == np.float32


@pytest.mark.parametrize("block", sorted(BLOCKS_BOTH_RATES))
def test_golden_block_correlation_both_rates(golden: dict, block: str) -> None:
    columns = BLOCKS_BOTH_RATES[block]
    at_7p5 = correlation(golden["ours"].features[:, columns], golden["official_7p5"][:, columns])
    at_60 = correlation(golden["ours_60"][:, columns], golden["official_60"][:, columns])
    assert at_7p5 >= 0.99, f"{block} at 7.5 fps: {at_7p5:.4f}"
    assert at_60 >= 0.99, f"{block} at 60 fps: {at_60:.4f}"


@pytest.mark.parametrize("block", sorted(RHYTHM_BLOCKS))
def test_golden_rhythm_correlation_60fps(golden: dict, block: str) -> None:
    columns = RHYTHM_BLOCKS[block]
    value = correlation(golden["ours_60"][:, columns], golden["official_60"][:, columns])
    assert value >= 0.99, f"{block} at 60 fps: {value:.4f}"


def test_golden_beats_within_one_frame(golden: dict) -> None:
    official_beats = np.flatnonzero(golden["official_60"][:, audio.BEAT_COLUMN])
    ours = golden["ours"].beats
    assert len(official_beats) == 42
    hits = [np.min(np.abs(ours - b)) <= 1 for b in official_beats]
    assert np.mean(hits) >= 0.95, f"only {np.mean(hits):.0%} of official beats within 1 frame"
    # The 60 fps matrix carries the same beats in its beat column.
    np.testing.assert_array_equal(np.flatnonzero(golden["ours_60"][:, audio.BEAT_COLUMN]), ours)


def test_official_mode_zeroes_rhythm_columns_like_the_official_features(golden: dict) -> None:
    assert not np.any(golden["official_7p5"][:, audio.RHYTHM_COLUMNS])  # the librosa 0.8.1 quirk
    assert not np.any(golden["ours"].features[:, audio.RHYTHM_COLUMNS])
    assert np.all(np.any(golden["ours"].features[:, :52] != 0, axis=0))  # the 52 live columns are live


def test_fast_hpss_equals_librosa(golden_dir: Path) -> None:
    import librosa

    y = audio.load_audio(golden_dir / "vibe_ace_excerpt_20s.wav", audio.TOKEN_SR)[: 5 * audio.TOKEN_SR]
    D = librosa.stft(y, pad_mode="reflect")
    expected_h, expected_p = librosa.decompose.hpss(D, mask=True)
    mask_h, mask_p = audio.hpss_masks(D)
    np.testing.assert_allclose(mask_h, expected_h, atol=1e-6)
    np.testing.assert_allclose(mask_p, expected_p, atol=1e-6)


def test_running_median_matches_scipy_with_ties_and_short_rows() -> None:
    from scipy.ndimage import median_filter

    rng = np.random.default_rng(1)
    S = np.abs(rng.standard_normal((6, 200))).astype(np.float32)
    S[2, 20:90] = 0.0  # ties
    S[3] = np.round(S[3], 1)
    for matrix in (S, S[:, :7]):  # rows shorter than the window reflect more than once
        ours = separation._median_rows(np.ascontiguousarray(matrix), 31, None)
        np.testing.assert_array_equal(ours, median_filter(matrix, size=(1, 31), mode="reflect"))


# --- real songs ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", audio.FEATURE_MODES)
def test_real_song_shapes_and_frame_counts(music_dir: Path, mode: str) -> None:
    song = music_dir / "trumpet_loop_90bpm.ogg"
    result = audio.extract_features(song, mode, cache_dir=False)
    frames_7p5 = 1 + len(audio.load_audio(song, audio.TOKEN_SR)) // audio.HOP_LENGTH
    frames_60 = 1 + len(audio.load_audio(song, audio.BEAT_SR)) // audio.HOP_LENGTH
    assert result.features.shape == (frames_7p5, audio.FEATURE_DIM)
    assert result.mode == mode and abs(result.duration_s - sf.info(str(song)).duration) < 0.01
    matrix_60 = audio.features_60fps(song, mode, cache_dir=False)
    assert matrix_60.shape == (frames_60, audio.FEATURE_DIM)
    assert np.all(np.isfinite(result.features)) and np.all(np.isfinite(matrix_60))
    assert len(result.beats) >= 4 and np.all((0 <= result.beats) & (result.beats < frames_60))
    rhythm = result.features[:, audio.RHYTHM_COLUMNS]
    assert np.any(rhythm) == (mode == "full")


@pytest.mark.parametrize("fmt", ["FLAC", "MP3", "OGG"])
def test_other_containers_decode_to_the_same_length(tmp_path: Path, fmt: str) -> None:
    y = noise(3.0)
    path = tmp_path / f"song.{fmt.lower()}"
    sf.write(str(path), np.stack([y, -y], axis=1) * 0.5 + y[:, None] * 0.5, 22050, format=fmt)
    loaded = audio.load_audio(path, audio.TOKEN_SR)  # stereo mixed to mono
    assert loaded.dtype == np.float32 and loaded.ndim == 1
    assert abs(len(loaded) - 3.0 * audio.TOKEN_SR) <= 0.05 * audio.TOKEN_SR  # mp3 adds encoder padding


# --- beats ----------------------------------------------------------------------------------------------
def test_beats_land_on_a_click_track(tmp_path: Path) -> None:
    sr = 44100
    y, click_times = click_track(bpm=120, seconds=8.0, sr=sr, first_s=0.5)
    path = write_wav(tmp_path / "clicks.wav", y, sr)
    beats = audio.extract_features(path, "official", cache_dir=False).beats
    click_frames = click_times * BEAT_FPS
    distance = np.array([np.min(np.abs(click_frames - b)) for b in beats])
    assert len(beats) >= 0.8 * len(click_frames), f"{len(beats)} beats for {len(click_frames)} clicks"
    assert np.all(distance <= 2), f"beats off the clicks by {distance.max():.1f} frames"


# --- bad input -------------------------------------------------------------------------------------------
def assert_refused(path: Path, error: type, cache: Path, **kwargs) -> None:
    with pytest.raises(error):
        audio.extract_features(path, "official", cache_dir=cache, **kwargs)
    assert not cache.exists() or not any(cache.iterdir()), "a refused song left files in the cache"


def test_text_file_renamed_wav_is_not_audio(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("these are my dance notes, not a song\n" * 20)
    assert_refused(path, NotAudioError, tmp_path / "cache")


def test_png_renamed_mp3_and_unsupported_extension_are_not_audio(tmp_path: Path) -> None:
    png = tmp_path / "cover.mp3"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    assert_refused(png, NotAudioError, tmp_path / "cache")
    good_audio_bad_name = write_wav(tmp_path / "song.wav", noise(3.0), 22050).rename(tmp_path / "song.txt")
    assert_refused(good_audio_bad_name, NotAudioError, tmp_path / "cache")


def test_corrupt_and_truncated_files_are_decode_errors(tmp_path: Path, music_dir: Path) -> None:
    ogg = (music_dir / "trumpet_loop_90bpm.ogg").read_bytes()
    rng = np.random.default_rng(0)
    (tmp_path / "garbage.ogg").write_bytes(ogg[:4] + rng.bytes(20000))  # an Ogg signature, then noise
    (tmp_path / "cut.ogg").write_bytes(ogg[:4000])  # cut inside the Vorbis headers
    buffer = io.BytesIO()
    sf.write(buffer, noise(4.0), 22050, format="WAV", subtype="PCM_16")
    wav = buffer.getvalue()
    (tmp_path / "half.wav").write_bytes(wav[: len(wav) // 2])  # a truncated download
    (tmp_path / "header.wav").write_bytes(wav[:20])
    for name in ("garbage.ogg", "cut.ogg", "half.wav", "header.wav"):
        assert_refused(tmp_path / name, AudioDecodeError, tmp_path / "cache")


def _truncated(path: Path, fraction: float = 0.5) -> Path:
    data = path.read_bytes()
    cut = path.with_name("cut_" + path.name)
    cut.write_bytes(data[: int(len(data) * fraction)])
    return cut


@pytest.mark.parametrize("fmt", ["ogg", "mp3"])
def test_truncated_ogg_and_mp3_are_refused_not_danced_in_part(tmp_path: Path, fmt: str) -> None:
    """libsndfile decodes the first part of a download cut short without a word; we compare with the header
    (MP3) or look for the stream's last page (Ogg)."""
    y, _ = click_track(bpm=100, seconds=6.0, sr=22050, first_s=0.3)
    whole = tmp_path / f"song.{fmt}"
    sf.write(str(whole), y + noise(6.0) * 0.05, 22050)
    assert audio.load_audio(whole, audio.TOKEN_SR).shape[0] == 6 * audio.TOKEN_SR
    with pytest.raises(AudioDecodeError, match="truncated"):
        audio.load_audio(_truncated(whole), audio.TOKEN_SR)


def _streamed_flac(tmp_path: Path, seconds: float) -> tuple[Path, Path]:
    """A FLAC and the same FLAC as a streaming encoder writes it: total samples 0 ("unknown") in STREAMINFO."""
    y, _ = click_track(bpm=100, seconds=seconds, sr=22050, first_s=0.3)
    whole = tmp_path / "song.flac"
    sf.write(str(whole), y + noise(seconds) * 0.05, 22050)
    data = bytearray(whole.read_bytes())
    at = 8 + 10  # "fLaC", the block header, then 10 bytes of STREAMINFO before rate|channels|bits|total
    field = int.from_bytes(data[at : at + 8], "big") & ~((1 << 36) - 1)  # the 36-bit total samples -> 0
    data[at : at + 8] = field.to_bytes(8, "big")
    streamed = tmp_path / "streamed.flac"
    streamed.write_bytes(bytes(data))
    return whole, streamed


def test_streamed_flac_without_a_length_decodes_whole_and_keeps_the_limit(tmp_path: Path) -> None:
    whole, streamed = _streamed_flac(tmp_path, 5.0)
    assert sf.info(str(streamed)).frames != sf.info(str(whole)).frames  # the header really lost its length
    np.testing.assert_array_equal(audio.load_audio(streamed, 22050), audio.load_audio(whole, 22050))
    features = audio.extract_features(streamed, "full", cache_dir=False)
    assert features.duration_s == pytest.approx(5.0) and features.num_frames == 38
    with pytest.raises(AudioTooLongError, match="header does not say"):
        audio.load_audio(streamed, audio.TOKEN_SR, max_duration_s=3.0)


def test_huge_float_samples_are_scaled_to_full_scale(tmp_path: Path) -> None:
    y, _ = click_track(bpm=100, seconds=4.0, sr=22050, first_s=0.3)
    y = y + noise(4.0) * 0.05
    huge = write_wav(tmp_path / "huge.wav", y * np.float32(1e30), 22050, subtype="FLOAT")
    normal = write_wav(tmp_path / "normal.wav", y / np.abs(y).max(), 22050, subtype="FLOAT")
    got = audio.extract_features(huge, "full", cache_dir=False)
    expected = audio.extract_features(normal, "full", cache_dir=False)
    assert np.all(np.isfinite(got.features))
    np.testing.assert_allclose(got.features, expected.features, rtol=1e-3, atol=1e-3)
    np.testing.assert_array_equal(got.beats, expected.beats)


def test_silence_is_refused(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "silence.wav", np.zeros(22050 * 5, dtype=np.float32), 22050)
    assert_refused(path, SilentAudioError, tmp_path / "cache")
    hiss = write_wav(tmp_path / "hiss.wav", noise(5.0) * 1e-4, 22050, subtype="FLOAT")  # about -74 dBFS
    assert_refused(hiss, SilentAudioError, tmp_path / "cache")


def test_one_second_song_is_too_short(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "short.wav", noise(1.0), 22050)
    assert_refused(path, AudioTooShortError, tmp_path / "cache")
    with pytest.raises(AudioTooShortError, match="at least 2 s"):
        audio.load_audio(path, audio.TOKEN_SR)


def test_over_long_song_is_refused_from_its_header(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 16 minutes at 1 kHz: a real over-limit file that is cheap to write.
    path = write_wav(tmp_path / "long.wav", noise(16 * 60, sr=1000), 1000)

    def no_decoding(*args, **kwargs):
        raise AssertionError("the song was decoded before its length was checked")

    monkeypatch.setattr(decode, "_read_samples", no_decoding)
    assert_refused(path, AudioTooLongError, tmp_path / "cache")
    short = write_wav(tmp_path / "three_seconds.wav", noise(3.0), 22050)
    with pytest.raises(AudioTooLongError, match="limit is"):
        audio.load_audio(short, audio.TOKEN_SR, max_duration_s=2.5)


def test_missing_file_and_bad_mode(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        audio.extract_features(tmp_path / "nope.ogg", cache_dir=tmp_path / "cache")
    with pytest.raises(AudioFileNotFoundError):
        audio.load_audio(tmp_path / "nope.ogg", 3840)
    with pytest.raises(InvalidOptionError):
        audio.extract_features(tmp_path / "nope.ogg", "paper", cache_dir=False)
    assert not (tmp_path / "cache").exists()


# --- the cache --------------------------------------------------------------------------------------------
@pytest.fixture()
def small_song(tmp_path: Path) -> Path:
    y, _ = click_track(bpm=100, seconds=4.0, sr=22050, first_s=0.3)
    return write_wav(tmp_path / "song.wav", y + noise(4.0) * 0.05, 22050)


def test_cache_returns_identical_arrays_without_decoding(
    small_song: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    progress: list[float] = []
    first = audio.extract_features(
        small_song, "full", cache_dir=cache, progress=lambda f, m: progress.append(f)
    )
    assert progress[0] == 0.0 and progress[-1] == 1.0 and progress == sorted(progress)
    entries = sorted(p.name for p in cache.iterdir())
    assert len(entries) == 2 and not any(name.startswith(".tmp") for name in entries)

    decodes = []
    real_decode = decode._decode
    monkeypatch.setattr(decode, "_decode", lambda *a: decodes.append(a) or real_decode(*a))
    second = audio.extract_features(small_song, "full", cache_dir=cache)
    assert decodes == []
    np.testing.assert_array_equal(second.features, first.features)
    np.testing.assert_array_equal(second.beats, first.beats)
    assert second.content_hash == first.content_hash and second.duration_s == first.duration_s

    # Another mode is another entry (one decode); the beats are shared.
    audio.extract_features(small_song, "official", cache_dir=cache)
    assert len(list(cache.iterdir())) == 3 and len(decodes) == 1

    # New content under the same name gives a new key and a recomputation.
    y, _ = click_track(bpm=140, seconds=4.0, sr=22050, first_s=0.2)
    write_wav(small_song, y + noise(4.0, seed=3) * 0.05, 22050)
    third = audio.extract_features(small_song, "full", cache_dir=cache)
    assert third.content_hash != first.content_hash and len(decodes) == 2
    assert not np.array_equal(third.features, first.features)


def test_corrupt_cache_entry_is_ignored_and_rewritten(small_song: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = audio.extract_features(small_song, "official", with_beats=False, cache_dir=cache)
    (entry,) = list(cache.iterdir())
    entry.write_bytes(b"PK\x03\x04 half a zip file")
    second = audio.extract_features(small_song, "official", with_beats=False, cache_dir=cache)
    np.testing.assert_array_equal(second.features, first.features)
    with np.load(entry) as npz:  # rewritten whole
        np.testing.assert_array_equal(npz["values"], first.features)


def _bad_entries(good: dict) -> dict[str, dict]:
    """Valid .npz entries that cannot be what the song gives."""
    tokens, beats = good["tokens"], good["beats"]
    return {
        "tokens: too few rows": {**tokens, "values": tokens["values"][:3]},
        "tokens: far too many rows": {**tokens, "values": np.zeros((9000, 438), np.float32)},
        "tokens: NaN": {**tokens, "values": np.where(tokens["values"] > 1, np.nan, tokens["values"])},
        "tokens: float64": {**tokens, "values": tokens["values"].astype(np.float64)},
        "tokens: wrong duration": {**tokens, "duration_s": np.array(1227.0)},
        "tokens: no values": {k: v for k, v in tokens.items() if k != "values"},
        "beats: negative": {**beats, "values": np.array([-5, 10, 20])},
        "beats: past the end": {**beats, "values": np.array([10, 20, 10**12])},
        "beats: NaN (float)": {**beats, "values": np.array([10.0, np.nan])},
        "beats: no values": {k: v for k, v in beats.items() if k != "values"},
    }


def test_cache_entries_that_cannot_be_this_song_are_recomputed_and_healed(small_song: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = audio.extract_features(small_song, "full", cache_dir=cache)
    paths = {kind: next(cache.glob(f"*-{kind}*.npz")) for kind in ("tokens", "beats")}
    good = {kind: dict(np.load(path)) for kind, path in paths.items()}
    for case, entry in _bad_entries(good).items():
        kind = case.split(":")[0]
        np.savez(paths[kind], **entry)
        again = audio.extract_features(small_song, "full", cache_dir=cache)
        np.testing.assert_array_equal(again.features, first.features, err_msg=case)
        np.testing.assert_array_equal(again.beats, first.beats, err_msg=case)
        assert again.duration_s == first.duration_s, case
        with np.load(paths[kind]) as healed:  # rewritten with the right values
            np.testing.assert_array_equal(healed["values"], good[kind]["values"], err_msg=case)


def test_default_cache_dir_follows_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DANCE_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert audio.default_cache_dir() == tmp_path / "elsewhere"
    monkeypatch.delenv("DANCE_CACHE_DIR")
    assert audio.default_cache_dir() == Path.home() / ".cache" / "bailando-blender" / "features"


def test_uncached_call_writes_nothing(
    small_song: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DANCE_CACHE_DIR", str(tmp_path / "default"))
    audio.extract_features(small_song, "official", with_beats=False, cache_dir=False)
    assert not (tmp_path / "default").exists()
    shutil.rmtree(tmp_path / "default", ignore_errors=True)
