"""A song's estimated tempo (BPM) and key, simple and honest about being estimates. Qt-free, numpy + soxr.

Tempo: a spectral-flux onset envelope (log-compressed STFT magnitudes, positive differences summed over
frequency, local mean removed), its autocorrelation over lags of 40-240 BPM, weighted by a log-normal prior
around 120 BPM (one octave wide) so that the half- and double-tempo peaks lose to the felt beat; the peak is
refined by parabolic interpolation. Key: a chroma vector (STFT magnitude of 65 Hz-2 kHz folded onto the 12
pitch classes, summed over the song) correlated with the 24 rotated Krumhansl-Kessler major and minor key
profiles; the best correlation wins. Both report a confidence in [0, 1] so the app can say "about".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ANALYSIS_RATE = 11025
NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
# Krumhansl & Kessler (1982) probe-tone ratings, C major / C minor
MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
MIN_BPM, MAX_BPM, PRIOR_BPM = 40.0, 240.0, 120.0


@dataclass(frozen=True)
class Key:
    tonic: int  # pitch class, 0 = C
    mode: str  # "major" or "minor"
    confidence: float = 0.0

    @property
    def name(self) -> str:
        return f"{NOTE_NAMES[self.tonic]} {self.mode}"

    def transposed(self, semitones: float) -> "Key":
        """The key after a transposition (rounded to the nearest semitone)."""
        return Key((self.tonic + int(round(semitones))) % 12, self.mode, self.confidence)


@dataclass(frozen=True)
class Analysis:
    bpm: float
    bpm_confidence: float
    key: Key

    def describe(self, tempo: float = 1.0, semitones: float = 0.0) -> str:
        """'≈ 98 BPM · A minor', with the values after a tempo change and a transposition."""
        bpm = f"≈ {self.bpm * tempo:.0f} BPM" if self.bpm > 0 else "tempo unclear"
        return f"{bpm} · {self.key.transposed(semitones).name}"


def _mono(audio: np.ndarray, samplerate: int) -> np.ndarray:
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(axis=0)
    if samplerate != ANALYSIS_RATE and x.size:
        import soxr

        x = soxr.resample(x, samplerate, ANALYSIS_RATE, quality="LQ")
    return np.ascontiguousarray(x, dtype=np.float32)


def _stft_mag(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """|STFT| as (frames, bins), Hann window, no padding beyond one frame."""
    if x.size < n_fft:
        x = np.pad(x, (0, n_fft - x.size))
    frames = 1 + (x.size - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]
    win = np.hanning(n_fft).astype(np.float32)
    return np.abs(np.fft.rfft(x[idx] * win, axis=1)).astype(np.float32)


def onset_envelope(x: np.ndarray, hop: int = 128, n_fft: int = 1024) -> np.ndarray:
    mag = _stft_mag(x, n_fft, hop)
    logmag = np.log1p(100.0 * mag)
    flux = np.maximum(0.0, np.diff(logmag, axis=0)).sum(axis=1)
    if flux.size == 0:
        return flux
    width = max(1, int(round(0.4 * ANALYSIS_RATE / hop)))  # remove the local mean (400 ms)
    local = np.convolve(flux, np.ones(width) / width, mode="same")
    return np.maximum(0.0, flux - local)


def estimate_tempo(audio: np.ndarray, samplerate: int, hop: int = 128) -> tuple[float, float]:
    """(BPM, confidence); (0, 0) for silence or too little audio."""
    env = onset_envelope(_mono(audio, samplerate), hop)
    frame_rate = ANALYSIS_RATE / hop
    if env.size < 4 * frame_rate or not env.any():
        return 0.0, 0.0
    env = env - env.mean()
    n = int(2 ** np.ceil(np.log2(2 * env.size)))
    spec = np.fft.rfft(env, n)
    ac = np.fft.irfft(spec * np.conj(spec), n)[:env.size]
    ac = ac / (ac[0] + 1e-12)
    lags = np.arange(ac.size, dtype=np.float64)
    lo = int(np.floor(60 * frame_rate / MAX_BPM))
    hi = min(ac.size - 2, int(np.ceil(60 * frame_rate / MIN_BPM)))
    if hi <= lo + 2:
        return 0.0, 0.0
    bpm_of_lag = 60 * frame_rate / np.maximum(lags, 1)
    prior = np.exp(-0.5 * (np.log2(bpm_of_lag / PRIOR_BPM) / 1.0) ** 2)
    score = np.where((lags >= lo) & (lags <= hi), np.maximum(ac, 0) * prior, 0.0)
    k = int(np.argmax(score))
    if k <= 0 or score[k] <= 0:
        return 0.0, 0.0
    a, b, c = ac[k - 1], ac[k], ac[k + 1]
    denom = a - 2 * b + c
    shift = 0.5 * (a - c) / denom if abs(denom) > 1e-12 else 0.0
    lag = k + float(np.clip(shift, -0.5, 0.5))
    confidence = float(np.clip(ac[k], 0.0, 1.0))
    return float(60 * frame_rate / lag), confidence


def chroma(audio: np.ndarray, samplerate: int, n_fft: int = 4096, hop: int = 2048) -> np.ndarray:
    """The song's 12-bin chroma (C first), normalised to sum 1 (zeros for silence)."""
    x = _mono(audio, samplerate)
    mag = _stft_mag(x, n_fft, hop)
    freqs = np.fft.rfftfreq(n_fft, 1 / ANALYSIS_RATE)
    band = (freqs >= 65.0) & (freqs <= 2000.0)
    midi = 69 + 12 * np.log2(freqs[band] / 440.0)
    pcs = np.mod(np.round(midi).astype(int), 12)
    energy = np.sqrt(mag[:, band]).sum(axis=0)  # sqrt: loud bass notes do not drown the rest
    out = np.bincount(pcs, weights=energy, minlength=12)
    total = out.sum()
    return out / total if total > 0 else out


def estimate_key(audio: np.ndarray, samplerate: int) -> Key:
    c = chroma(audio, samplerate)
    if not c.any():
        return Key(0, "major", 0.0)
    scores = []
    for mode, profile in (("major", MAJOR_PROFILE), ("minor", MINOR_PROFILE)):
        for tonic in range(12):
            scores.append((float(np.corrcoef(c, np.roll(profile, tonic))[0, 1]), tonic, mode))
    scores.sort(reverse=True)
    best, second = scores[0], scores[1]
    confidence = float(np.clip((best[0] - second[0]) * 5 + 0.5 * max(0.0, best[0]), 0.0, 1.0))
    return Key(best[1], best[2], confidence)


def analyse(audio: np.ndarray, samplerate: int, max_seconds: float = 240.0) -> Analysis:
    """Tempo and key of a song (channels, samples) or mono (samples); reads at most `max_seconds` from the middle."""
    x = np.asarray(audio)
    total = x.shape[-1]
    limit = int(max_seconds * samplerate)
    if total > limit:
        start = (total - limit) // 2
        x = x[..., start:start + limit]
    bpm, conf = estimate_tempo(x, samplerate)
    return Analysis(round(bpm, 1), conf, estimate_key(x, samplerate))
