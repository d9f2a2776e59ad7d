"""The 438-d Bailando music-feature recipe, at 7.5 fps (GPT tokens) and 60 fps (beats).

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

import numpy as np

from .separation import hpss

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
    harmonic, percussive = hpss(y, hop_length=HOP_LENGTH, harmonic=True, percussive=rhythm)
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
    _, percussive = hpss(y, hop_length=HOP_LENGTH, harmonic=False, percussive=True)
    _, beats = _rhythm_block(percussive, sr, tempogram=False)
    return beats
