"""A production chain for synthetic stems: per-stem insert effects and sends, then mix-bus dynamics.

Why: produced songs are EQ'd, compressed, saturated, spread with chorus/delay/reverb and mastered loud; a
separator trained on dry General MIDI renders meets all of that for the first time on a real song. Every
setting is drawn from the song's numpy Generator and recorded, and pedalboard's effects are deterministic,
so the same seed gives the same audio.

The bus keeps mixture == sum(stems) exactly: its EQ is linear (applied to each stem, the sum is the EQ'd
mix), and its compressor and limiter compute one gain envelope from the mix and multiply every stem by
that same envelope (a linked, look-ahead gain, like a mastering limiter's sidechain). Non-linear bus
saturation cannot be split into stems, so there is none on the bus; saturation lives on the stems (guitars,
bass, drums) where it would be in a real session.

pedalboard (Spotify, GPL-3.0) is imported only here and only by the dataset generator, never by separation.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

SAMPLERATE = 44100


def _r(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _round(params: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in params.items()}


# ------------------------------------------------------------------------------------------ insert chains


def insert_chain(kind: str, rng: np.random.Generator):
    """A pedalboard.Pedalboard for one track of `kind` and the settings drawn for it.

    Kinds: drums, bass, guitar, keys, pad, lead (melodic instruments), vocals, backing.
    """
    import pedalboard as pb

    p: dict[str, Any] = {}
    fx: list = []
    hp = {"drums": (25, 45), "bass": (25, 40), "guitar": (70, 140), "keys": (40, 120), "pad": (60, 200),
          "lead": (80, 200), "vocals": (70, 130), "backing": (100, 220)}[kind]
    p["highpass_hz"] = _r(rng, *hp)
    fx.append(pb.HighpassFilter(cutoff_frequency_hz=p["highpass_hz"]))
    if kind in ("guitar", "bass") and rng.random() < (0.7 if kind == "guitar" else 0.45):
        # amp: pre-EQ, drive, cabinet-like band limit
        p["drive_db"] = _r(rng, 6, 30) if kind == "guitar" else _r(rng, 3, 14)
        fx.append(pb.PeakFilter(cutoff_frequency_hz=_r(rng, 600, 1500), gain_db=_r(rng, 0, 6), q=0.8))
        fx.append(pb.Distortion(drive_db=p["drive_db"]))
        p["cab_lowpass_hz"] = _r(rng, 3500, 7000) if kind == "guitar" else _r(rng, 2500, 6000)
        fx.append(pb.LowpassFilter(cutoff_frequency_hz=p["cab_lowpass_hz"]))
        fx.append(pb.Gain(gain_db=-p["drive_db"] * 0.6))
    elif kind == "drums" and rng.random() < 0.3:
        p["drive_db"] = _r(rng, 2, 8)
        fx.append(pb.Distortion(drive_db=p["drive_db"]))
        fx.append(pb.Gain(gain_db=-p["drive_db"] * 0.6))
    # three-band EQ
    p["low_shelf_db"] = _r(rng, -4, 4)
    p["mid_hz"], p["mid_db"] = _r(rng, 250, 3500), _r(rng, -5, 4)
    p["high_shelf_db"] = _r(rng, -3, 5) if kind != "bass" else _r(rng, -6, 2)
    fx += [pb.LowShelfFilter(cutoff_frequency_hz=_r(rng, 80, 250), gain_db=p["low_shelf_db"]),
           pb.PeakFilter(cutoff_frequency_hz=p["mid_hz"], gain_db=p["mid_db"], q=_r(rng, 0.5, 2.0)),
           pb.HighShelfFilter(cutoff_frequency_hz=_r(rng, 4000, 10000), gain_db=p["high_shelf_db"])]
    if kind != "pad" or rng.random() < 0.4:
        p["comp_ratio"] = _r(rng, 2.0, 6.0) if kind in ("drums", "bass", "vocals") else _r(rng, 1.5, 4.0)
        p["comp_threshold_db"] = _r(rng, -30, -14)
        fx.append(pb.Compressor(threshold_db=p["comp_threshold_db"], ratio=p["comp_ratio"],
                                attack_ms=_r(rng, 2, 30), release_ms=_r(rng, 40, 250)))
    chorus_p = {"guitar": 0.3, "keys": 0.3, "pad": 0.45, "lead": 0.2, "bass": 0.1, "backing": 0.3}.get(kind, 0.0)
    if rng.random() < chorus_p:
        p["chorus_mix"] = _r(rng, 0.2, 0.5)
        fx.append(pb.Chorus(rate_hz=_r(rng, 0.3, 2.0), depth=_r(rng, 0.15, 0.5), centre_delay_ms=_r(rng, 5, 12),
                            feedback=0.0, mix=p["chorus_mix"]))
    return pb.Pedalboard(fx), _round(p)


def run_board(board, x: np.ndarray, samplerate: int = SAMPLERATE) -> np.ndarray:
    """Process (channels, samples) float with a Pedalboard from a clean state; float64 out."""
    if not np.any(x):
        return np.zeros(x.shape, dtype=np.float64)
    y = board(np.ascontiguousarray(x, dtype=np.float32), samplerate, reset=True)
    return np.asarray(y, dtype=np.float64)


def sends(x: np.ndarray, rng: np.random.Generator, kind: str, beat: float,
          samplerate: int = SAMPLERATE) -> tuple[np.ndarray, dict]:
    """Reverb and tempo-synced delay returns of a stem (wet only; they belong to the stem that sent them)."""
    import pedalboard as pb

    p: dict[str, Any] = {}
    wet = np.zeros_like(x, dtype=np.float64)
    level = math.sqrt(float(np.mean(x ** 2))) + 1e-12
    rev_range = {"bass": (-40, -24), "drums": (-26, -12), "vocals": (-22, -10), "backing": (-18, -8)}.get(kind, (-24, -10))
    p["reverb_send_db"] = _r(rng, *rev_range)
    p["reverb_room"] = _r(rng, 0.3, 0.95)
    verb = pb.Pedalboard([pb.HighpassFilter(cutoff_frequency_hz=_r(rng, 150, 500)),
                          pb.Delay(delay_seconds=_r(rng, 0.0, 0.04), feedback=0.0, mix=1.0),
                          pb.Reverb(room_size=p["reverb_room"], damping=_r(rng, 0.2, 0.8), wet_level=1.0,
                                    dry_level=0.0, width=_r(rng, 0.6, 1.0)),
                          pb.LowpassFilter(cutoff_frequency_hz=_r(rng, 5000, 12000))])
    r = run_board(verb, x, samplerate)
    wet += r * (level / (math.sqrt(float(np.mean(r ** 2))) + 1e-12)) * 10 ** (p["reverb_send_db"] / 20)
    delay_p = {"vocals": 0.5, "lead": 0.4, "guitar": 0.3, "keys": 0.25, "backing": 0.3}.get(kind, 0.05)
    if rng.random() < delay_p:
        p["delay_beats"] = float(rng.choice((0.5, 0.75, 1.0, 1.5)))
        p["delay_send_db"] = _r(rng, -22, -10)
        d = run_board(pb.Pedalboard([pb.HighpassFilter(cutoff_frequency_hz=300.0),
                                     pb.Delay(delay_seconds=min(2.0, p["delay_beats"] * beat),
                                              feedback=_r(rng, 0.15, 0.45), mix=1.0),
                                     pb.LowpassFilter(cutoff_frequency_hz=_r(rng, 3000, 8000))]), x, samplerate)
        wet += d * (level / (math.sqrt(float(np.mean(d ** 2))) + 1e-12)) * 10 ** (p["delay_send_db"] / 20)
    return wet, _round(p)


# ------------------------------------------------------------------------------------------ vocals


def de_ess(x: np.ndarray, rng: np.random.Generator, samplerate: int = SAMPLERATE) -> tuple[np.ndarray, dict]:
    """Split-band de-esser: the 4.5 kHz+ band is turned down where it jumps above its own average."""
    from scipy.ndimage import maximum_filter1d, uniform_filter1d
    from scipy.signal import butter, sosfiltfilt

    p = {"deess_hz": _r(rng, 4500, 6500), "deess_range_db": _r(rng, 3, 9)}
    sos = butter(4, p["deess_hz"], "highpass", fs=samplerate, output="sos")
    high = sosfiltfilt(sos, x, axis=-1)  # zero phase: low = x - high recombines exactly
    low = x - high
    env = np.sqrt(uniform_filter1d(np.max(high ** 2, axis=0), int(0.005 * samplerate)) + 1e-12)
    ref = np.sqrt(np.mean(env ** 2)) * 2.0
    over = np.maximum(env / ref, 1.0)
    gain = np.maximum(1.0 / over, 10 ** (-p["deess_range_db"] / 20))
    gain = uniform_filter1d(-maximum_filter1d(-gain, int(0.004 * samplerate)), int(0.004 * samplerate))
    return low + high * gain, _round(p)


def pitch_shift(x: np.ndarray, semitones: float, samplerate: int = SAMPLERATE) -> np.ndarray:
    """Formant-naive pitch shift (Rubber Band via pedalboard), same length."""
    import pedalboard as pb

    y = run_board(pb.Pedalboard([pb.PitchShift(semitones=semitones)]), x, samplerate)
    return y[..., : x.shape[-1]]


# ------------------------------------------------------------------------------------------ voice top octave


AIR_MODES = ("exciter", "fold", "lowpass", "mixed", "none")
"""How the voice's missing top octave (MIR-1K is 16 kHz) is handled:
exciter: harmonics of its 3-8 kHz band added above 8 kHz; fold: its 4-8 kHz band mirrored to 8-12 kHz;
lowpass: every stem of the song low-passed at 8 kHz, so "nothing above 8 kHz" is no cue for "voice";
mixed: one of exciter/fold/lowpass per song; none: left as it is."""


def active_rms(x: np.ndarray, samplerate: int = SAMPLERATE) -> float:
    """RMS over the frames that sound (silent passages don't dilute the level)."""
    x = np.atleast_2d(x)
    hop = samplerate // 10
    frames = x.shape[-1] // hop
    if frames == 0:
        return float(np.sqrt(np.mean(x ** 2))) if x.size else 0.0
    power = (x[:, : frames * hop].reshape(x.shape[0], frames, hop) ** 2).mean(axis=(0, 2))
    if power.max() <= 0:
        return 0.0
    return float(np.sqrt(power[power > power.max() * 1e-3].mean()))


def exciter_air(voice: np.ndarray, level_db: float, samplerate: int = SAMPLERATE) -> np.ndarray:
    """Harmonics (tanh) of the 3-8 kHz band, kept above 8 kHz, at `level_db` under the voice."""
    from scipy.signal import butter, sosfilt

    level = active_rms(voice)
    if level <= 0:
        return np.zeros_like(voice)
    band = sosfilt(butter(2, 3000.0, "highpass", fs=samplerate, output="sos"), voice, axis=-1)
    band_rms = active_rms(band) + 1e-12
    air = sosfilt(butter(4, 8000.0, "highpass", fs=samplerate, output="sos"), np.tanh(2.5 * band / band_rms), axis=-1)
    air = sosfilt(butter(1, 12000.0, "lowpass", fs=samplerate, output="sos"), air, axis=-1)
    return air * level * 10 ** (level_db / 20) / (active_rms(air) + 1e-12)


def folded_air(voice: np.ndarray, level_db: float, samplerate: int = SAMPLERATE) -> np.ndarray:
    """Spectral folding: the 4-8 kHz band mirrored about 8 kHz (f -> 16 kHz - f), band-limited to 8-12 kHz."""
    from scipy.signal import butter, sosfilt

    level = active_rms(voice)
    if level <= 0:
        return np.zeros_like(voice)
    band = sosfilt(butter(4, [4000.0, 7900.0], "bandpass", fs=samplerate, output="sos"), voice, axis=-1)
    t = np.arange(voice.shape[-1]) / samplerate
    mirrored = band * np.cos(2 * np.pi * 16000.0 * t)
    air = sosfilt(butter(6, [8000.0, 12000.0], "bandpass", fs=samplerate, output="sos"), mirrored, axis=-1)
    return air * level * 10 ** (level_db / 20) / (active_rms(air) + 1e-12)


def lowpass_8k(x: np.ndarray, samplerate: int = SAMPLERATE) -> np.ndarray:
    """Exactly the band MIR-1K has: down to 16 kHz and back with soxr (linear, so stem sums stay exact)."""
    import soxr

    x = np.asarray(x, dtype=np.float64)
    flat = np.atleast_2d(x)
    n = flat.shape[-1]
    up = soxr.resample(soxr.resample(flat.T, samplerate, 16000, quality="HQ"), 16000, samplerate, quality="HQ").T
    out = np.zeros_like(flat)
    out[:, : min(n, up.shape[-1])] = up[:, :n]
    return out.reshape(x.shape)


# ------------------------------------------------------------------------------------------ the mix bus


def _biquad(b0, b1, b2, a0, a1, a2):
    return np.array([[b0 / a0, b1 / a0, b2 / a0, 1.0, a1 / a0, a2 / a0]])


def k_weighting(samplerate: int = SAMPLERATE) -> np.ndarray:
    """BS.1770 K-weighting (high shelf +4 dB at 1.5 kHz, high-pass at 38 Hz) as second-order sections."""
    def shelf(fc, gain_db, q):
        a = 10 ** (gain_db / 40)
        w = 2 * np.pi * fc / samplerate
        alpha = np.sin(w) / (2 * q)
        c = np.cos(w)
        return _biquad(a * ((a + 1) + (a - 1) * c + 2 * np.sqrt(a) * alpha), -2 * a * ((a - 1) + (a + 1) * c),
                       a * ((a + 1) + (a - 1) * c - 2 * np.sqrt(a) * alpha), (a + 1) - (a - 1) * c + 2 * np.sqrt(a) * alpha,
                       2 * ((a - 1) - (a + 1) * c), (a + 1) - (a - 1) * c - 2 * np.sqrt(a) * alpha)

    def highpass(fc, q):
        w = 2 * np.pi * fc / samplerate
        alpha = np.sin(w) / (2 * q)
        c = np.cos(w)
        return _biquad((1 + c) / 2, -(1 + c), (1 + c) / 2, 1 + alpha, -2 * c, 1 - alpha)

    return np.concatenate([shelf(1500.0, 4.0, 1 / np.sqrt(2)), highpass(38.0, 0.5)])  # pyloudnorm's parameters


def integrated_loudness(x: np.ndarray, samplerate: int = SAMPLERATE) -> float:
    """BS.1770-4 gated integrated loudness (LUFS) of (channels, samples): 400 ms blocks, 75 % overlap,
    -70 LUFS absolute and -10 LU relative gates."""
    from scipy.signal import sosfilt

    y = sosfilt(k_weighting(samplerate), np.atleast_2d(x), axis=-1)
    block, hop = int(0.4 * samplerate), int(0.1 * samplerate)
    if y.shape[-1] < block:
        return -70.0
    csum = np.concatenate([np.zeros((y.shape[0], 1)), np.cumsum(y ** 2, axis=-1)], axis=-1)
    starts = np.arange(0, y.shape[-1] - block + 1, hop)
    power = ((csum[:, starts + block] - csum[:, starts]) / block).sum(axis=0)
    loud = -0.691 + 10 * np.log10(power + 1e-20)
    keep = loud > -70
    if not keep.any():
        return -70.0
    rel = -0.691 + 10 * np.log10(power[keep].mean()) - 10
    keep &= loud > rel
    return float(-0.691 + 10 * np.log10(power[keep].mean()))


def compressor_gain(mix: np.ndarray, threshold_db: float, ratio: float, attack: float, release: float,
                    samplerate: int = SAMPLERATE) -> np.ndarray:
    """Linked feed-forward compressor gain (samples,) computed on 1 ms blocks of the mix's RMS."""
    block = samplerate // 1000
    n = mix.shape[-1]
    frames = -(-n // block)
    padded = np.pad(np.max(np.atleast_2d(mix) ** 2, axis=0), (0, frames * block - n))
    level_db = 10 * np.log10(padded.reshape(frames, block).mean(axis=1) + 1e-12)
    target = np.minimum(0.0, (threshold_db - level_db) * (1 - 1 / ratio))
    a_att, a_rel = math.exp(-1e-3 / attack), math.exp(-1e-3 / release)
    g, out = 0.0, np.empty(frames)
    for i, t in enumerate(target.tolist()):  # one value per ms: a Python loop is fast enough
        coef = a_att if t < g else a_rel
        g = coef * g + (1 - coef) * t
        out[i] = g
    centres = (np.arange(frames) + 0.5) * block
    return 10 ** (np.interp(np.arange(n), centres, out) / 20)


def limiter_gain(mix: np.ndarray, ceiling: float, lookahead: float = 0.003, samplerate: int = SAMPLERATE) -> np.ndarray:
    """Look-ahead brickwall gain (samples,): after it, |gain * mix| <= ceiling at every sample.

    The gain each sample needs is min-filtered over a window W and then averaged over the same W, so every
    averaged value is at most the need at its centre (each term's window holds the centre): smooth, never over.
    """
    from scipy.ndimage import minimum_filter1d, uniform_filter1d

    peak = np.max(np.abs(np.atleast_2d(mix)), axis=0)
    need = np.minimum(1.0, ceiling / np.maximum(peak, 1e-12))
    w = max(3, int(lookahead * samplerate) | 1)
    smooth = uniform_filter1d(minimum_filter1d(need, w, mode="nearest"), w, mode="nearest")
    return np.minimum(smooth, need)  # float rounding of the average must not let a peak through


def bus_gain(mix: np.ndarray, rng: np.random.Generator, target_lufs: float, ceiling_db: float = -1.0,
             samplerate: int = SAMPLERATE) -> tuple[np.ndarray, dict]:
    """The mastering gain (samples,) that brings `mix` to about `target_lufs` under `ceiling_db` true-ish peak:
    make-up gain, a gentle glue compressor, then a look-ahead limiter, all computed on the mix."""
    p: dict[str, Any] = {"target_lufs": target_lufs, "ceiling_db": ceiling_db,
                         "glue_ratio": _r(rng, 1.5, 3.0), "glue_threshold_db": _r(rng, -14, -6)}
    ceiling = 10 ** (ceiling_db / 20)
    glue = compressor_gain(mix, p["glue_threshold_db"], p["glue_ratio"], _r(rng, 0.01, 0.03), _r(rng, 0.1, 0.3),
                           samplerate)
    gain = glue
    makeup = 0.0
    for _ in range(3):  # the limiter eats loudness: aim again from where the last pass landed
        shaped = mix * gain * 10 ** (makeup / 20)
        limited = shaped * limiter_gain(shaped, ceiling, samplerate=samplerate)
        now = integrated_loudness(limited, samplerate)
        makeup = float(np.clip(makeup + (target_lufs - now), -30.0, 30.0))
    total = gain * 10 ** (makeup / 20)
    total = total * limiter_gain(mix * total, ceiling, samplerate=samplerate)
    p["makeup_db"] = makeup
    return total, _round(p)
