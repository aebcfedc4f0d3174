"""A song's estimated tempo (BPM) and key, simple and honest about being estimates. Qt-free, numpy + soxr.

Tempo: a spectral-flux onset envelope (log-compressed STFT magnitudes, positive differences summed over
frequency, local mean removed), its autocorrelation over lags of 40-240 BPM, weighted by a log-normal prior
around 120 BPM (one octave wide) so that the half- and double-tempo peaks lose to the felt beat; the peak is
refined by parabolic interpolation.

Key: a log-frequency (constant-Q-like) pitch spectrogram from a long STFT, centred on the song's own tuning,
drums suppressed by median-filtering HPSS, harmonic summation so fundamentals outweigh overtones, folded to a
chroma vector and correlated with the 24 rotated Albrecht-Shanahan (2013) major/minor profiles. When the
separated stems exist, the key is estimated from the pitched stems (everything but the drums), which is
cleaner than the mix. The confidence is the calibrated probability of the best key; a nearly-as-likely
runner-up (often the relative major/minor, which uses the same notes) is kept so the app can say
"A minor (or C major)". Measured in benchmarks/analysis_accuracy.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ANALYSIS_RATE = 11025
NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
# Albrecht & Shanahan (2013) key profiles (pitch-class distributions of a corpus), C major / C minor. Of the four
# profiles tried (Krumhansl-Kessler, Temperley, Sha'ath, these) they gave the most exact keys on 30 synthetic
# songs of another seed than the benchmark's (seed 11); every constant below was chosen on those songs.
MAJOR_PROFILE = np.array([0.238, 0.006, 0.111, 0.006, 0.137, 0.094, 0.016, 0.214, 0.009, 0.080, 0.008, 0.081])
MINOR_PROFILE = np.array([0.220, 0.006, 0.104, 0.123, 0.019, 0.103, 0.012, 0.214, 0.062, 0.022, 0.061, 0.052])
KEY_FFT, KEY_HOP = 8192, 2048  # 0.74 s windows, 0.19 s hop at ANALYSIS_RATE
KEY_LOW_MIDI, KEY_HIGH_MIDI, KEY_BINS_PER_SEMITONE = 28, 96, 3  # E1 (41 Hz) to C7 (2.1 kHz)
KEY_BINS = (KEY_HIGH_MIDI - KEY_LOW_MIDI) * KEY_BINS_PER_SEMITONE
HPSS_TIME_FRAMES, HPSS_PITCH_BINS = 17, 17  # 3.2 s along time, 5.7 semitones along pitch
HARMONICS, HARMONIC_DECAY = 4, 0.6
KEY_TEMPERATURE = 0.06  # softmax temperature of the correlations: the lowest log-loss on those songs
ALTERNATIVE_RATIO = 0.35  # a runner-up at least this likely relative to the best is named too
MIN_BPM, MAX_BPM, PRIOR_BPM = 40.0, 240.0, 120.0


@dataclass(frozen=True)
class Key:
    tonic: int  # pitch class, 0 = C
    mode: str  # "major" or "minor"
    confidence: float = 0.0  # probability of this key among the 24, in [0, 1]
    alternative: "Key | None" = None  # a runner-up nearly as likely, named beside it

    @property
    def name(self) -> str:
        return f"{NOTE_NAMES[self.tonic]} {self.mode}"

    @property
    def label(self) -> str:
        """'A minor', or 'A minor (or C major)' when the runner-up is nearly as likely."""
        return f"{self.name} (or {self.alternative.name})" if self.alternative is not None else self.name

    def transposed(self, semitones: float) -> "Key":
        """The key after a transposition (rounded to the nearest semitone), its runner-up too."""
        alt = self.alternative.transposed(semitones) if self.alternative is not None else None
        return Key((self.tonic + int(round(semitones))) % 12, self.mode, self.confidence, alt)


@dataclass(frozen=True)
class Analysis:
    bpm: float
    bpm_confidence: float
    key: Key
    key_source: str = "mix"  # "mix", or "stems" when the key came from the separated pitched stems

    def describe(self, tempo: float = 1.0, semitones: float = 0.0) -> str:
        """'≈ 98 BPM · A minor (or C major)', with the values after a tempo change and a transposition."""
        bpm = f"≈ {self.bpm * tempo:.0f} BPM" if self.bpm > 0 else "tempo unclear"
        return f"{bpm} · {self.key.transposed(semitones).label}"

    def with_key(self, key: Key, source: str) -> "Analysis":
        return Analysis(self.bpm, self.bpm_confidence, key, source)


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


def _median(x: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Running median along `axis` (edges repeated); numpy's partition is ~5x faster than scipy's median_filter."""
    pad = [(0, 0)] * x.ndim
    pad[axis] = (size // 2, size // 2)
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(x, pad, mode="edge"), size, axis=axis)
    return np.partition(windows, size // 2, axis=-1)[..., size // 2]


def tuning_offset(mag: np.ndarray, freqs: np.ndarray) -> float:
    """How far the song's tuning is from A = 440 Hz, in semitones (-0.5, 0.5].

    The magnitude-weighted circular mean of the deviation from the equal-tempered grid of every spectral peak
    (parabolically interpolated) of the song's average spectrum between 60 Hz and 2 kHz.
    """
    spec = mag.mean(axis=0) if mag.ndim == 2 else mag
    inner = (freqs[1:-1] > 60.0) & (freqs[1:-1] < 2000.0)
    idx = 1 + np.nonzero(inner & (spec[1:-1] > spec[:-2]) & (spec[1:-1] >= spec[2:]))[0]
    if idx.size == 0:
        return 0.0
    a, b, c = (np.log(spec[i] + 1e-12) for i in (idx - 1, idx, idx + 1))
    denom = a - 2 * b + c
    shift = np.where(np.abs(denom) > 1e-12, 0.5 * (a - c) / np.where(denom == 0, 1, denom), 0.0)
    f = (idx + np.clip(shift, -0.5, 0.5)) * (freqs[1] - freqs[0])
    midi = 69 + 12 * np.log2(f / 440.0)
    turn = np.sum(spec[idx] * np.exp(2j * np.pi * (midi - np.round(midi))))
    return float(np.angle(turn) / (2 * np.pi)) if abs(turn) > 0 else 0.0


def pitch_spectrogram(x: np.ndarray) -> tuple[np.ndarray, float]:
    """(frames, KEY_BINS) log-frequency magnitudes, KEY_BINS_PER_SEMITONE bins a semitone from KEY_LOW_MIDI,
    centred on the song's own tuning; and that tuning (semitones from A440).

    A long STFT (0.74 s at 11 kHz: 1.3 Hz bins, finer than a semitone down to the bass) mapped onto the pitch
    grid with triangular weights: the constant-Q view the key needs, at the cost of one FFT per frame.
    """
    mag = _stft_mag(x, KEY_FFT, KEY_HOP)
    freqs = np.fft.rfftfreq(KEY_FFT, 1 / ANALYSIS_RATE)
    keep = freqs < 2600.0
    mag, freqs = mag[:, keep], freqs[keep]
    tuning = tuning_offset(mag, freqs)
    centres = KEY_LOW_MIDI + np.arange(KEY_BINS) / KEY_BINS_PER_SEMITONE + tuning
    bin_midi = 69 + 12 * np.log2(np.maximum(freqs, 1e-3) / 440.0)
    weights = np.maximum(0.0, 1 - np.abs(bin_midi[None, :] - centres[:, None]) * KEY_BINS_PER_SEMITONE)
    weights[:, freqs < 30.0] = 0.0
    return mag @ weights.T.astype(np.float32), tuning


def harmonic_part(spec: np.ndarray) -> np.ndarray:
    """Median-filtering harmonic/percussive separation (Fitzgerald 2010) on the pitch spectrogram: keeps what is
    steady in time (notes), drops what is broad in frequency (drum hits), by a soft Wiener-like mask."""
    if spec.shape[0] < 3:
        return spec
    steady = _median(spec, HPSS_TIME_FRAMES, axis=0)
    broad = _median(spec, HPSS_PITCH_BINS, axis=1)
    return spec * (steady ** 2 / (steady ** 2 + broad ** 2 + 1e-12))


def chroma(audio: np.ndarray, samplerate: int) -> np.ndarray:
    """The song's 12-bin chroma (C first), normalised to sum 1 (zeros for silence).

    Pitch spectrogram at the song's tuning, percussion suppressed (HPSS), semitone energies; each pitch gets
    the energy of its first harmonics too (weights 0.6^(h-1), h = 2..4) so a note's fundamental outweighs its
    overtones' pitch classes (the 3rd harmonic is a fifth up, which otherwise pulls towards the dominant).
    """
    spec, _tuning = pitch_spectrogram(_mono(audio, samplerate))
    semis = harmonic_part(spec).reshape(spec.shape[0], -1, KEY_BINS_PER_SEMITONE).sum(axis=2)
    salience = semis.copy()
    for h in range(2, HARMONICS + 1):
        up = int(round(12 * np.log2(h)))
        salience[:, :-up] += HARMONIC_DECAY ** (h - 1) * semis[:, up:]
    pitch_classes = (KEY_LOW_MIDI + np.arange(salience.shape[1])) % 12
    out = np.bincount(pitch_classes, weights=salience.sum(axis=0), minlength=12)
    total = out.sum()
    return out / total if total > 0 else out


def key_scores(c: np.ndarray) -> np.ndarray:
    """(2, 12) Pearson correlations of chroma `c` with the key profiles: row 0 major, row 1 minor; column = tonic."""
    scores = np.zeros((2, 12))
    if not np.any(c) or np.ptp(c) == 0:
        return scores
    for row, profile in enumerate((MAJOR_PROFILE, MINOR_PROFILE)):
        for tonic in range(12):
            scores[row, tonic] = np.corrcoef(c, np.roll(profile, tonic))[0, 1]
    return scores


def key_from_scores(scores: np.ndarray) -> Key:
    """The best key, its probability as confidence, and the runner-up when it is nearly as likely.

    Probabilities are a softmax of the correlations at temperature KEY_TEMPERATURE (fitted for calibration on
    synthetic songs not in the benchmark); the runner-up is kept when it has at least ALTERNATIVE_RATIO of the
    best one's probability (very often the relative major/minor: the same notes, a different home chord).
    """
    flat = scores.ravel()
    if not np.any(flat):
        return Key(0, "major", 0.0)
    p = np.exp((flat - flat.max()) / KEY_TEMPERATURE)
    p /= p.sum()
    order = np.argsort(-p)
    first, second = int(order[0]), int(order[1])
    mode = lambda i: "major" if i < 12 else "minor"  # noqa: E731 - two-line helper
    alternative = None
    if p[second] >= ALTERNATIVE_RATIO * p[first]:
        alternative = Key(second % 12, mode(second), float(p[second]))
    return Key(first % 12, mode(first), float(p[first]), alternative)


def estimate_key(audio: np.ndarray, samplerate: int) -> Key:
    return key_from_scores(key_scores(chroma(audio, samplerate)))


def _middle(x: np.ndarray, samplerate: int, max_seconds: float) -> np.ndarray:
    x = np.asarray(x)
    limit = int(max_seconds * samplerate)
    if x.shape[-1] > limit:
        start = (x.shape[-1] - limit) // 2
        x = x[..., start:start + limit]
    return x


def analyse(audio: np.ndarray, samplerate: int, max_seconds: float = 240.0,
            pitched: np.ndarray | None = None) -> Analysis:
    """Tempo and key of a song (channels, samples) or mono (samples); reads at most `max_seconds` from the middle.

    `pitched`, when given, is the sum of the separated stems other than drums (same shape and rate): the key
    is estimated from it (cleaner than the mix), the tempo still from the mix (drums carry the beat).
    """
    x = _middle(audio, samplerate, max_seconds)
    bpm, conf = estimate_tempo(x, samplerate)
    if pitched is not None:
        return Analysis(round(bpm, 1), conf, estimate_key(_middle(pitched, samplerate, max_seconds), samplerate),
                        "stems")
    return Analysis(round(bpm, 1), conf, estimate_key(x, samplerate))


def analyse_key(pitched: np.ndarray, samplerate: int, max_seconds: float = 240.0) -> Key:
    """The key alone from the separated pitched stems' sum, (channels, samples) or (samples); only the middle
    `max_seconds` are read (the caller keeps the tempo from the mix)."""
    return estimate_key(_middle(pitched, samplerate, max_seconds), samplerate)


def stems_mono_sum(lanes: np.ndarray, indices: list[int], samplerate: int, max_seconds: float = 240.0) -> np.ndarray:
    """Mono sum of `lanes[indices]` ((lanes, channels, samples), e.g. a memory-mapped cache entry) over the
    middle `max_seconds` only, one lane at a time: never a copy of the whole stems."""
    frames = lanes.shape[-1]
    limit = min(frames, int(max_seconds * samplerate))
    start = (frames - limit) // 2
    out = np.zeros(limit, dtype=np.float32)
    for i in indices:
        out += np.asarray(lanes[i, :, start:start + limit], dtype=np.float32).mean(axis=0)
    return out
