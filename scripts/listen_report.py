"""How a model sounds on real songs that have no true stems: levels, transients and spectrograms per stem.

With no references there is no SDR; what can still be checked is where each stem's energy goes. For every song
this writes a figure (mixture and stem log-mel spectrograms over the loudest stretch, plus each stem's level
over the whole song) and a JSON of figures per stem:

- ``share_db``: the stem's energy relative to the mixture's (0 dB = all of it; an instrumental song should give
  a very low vocals share);
- ``active``: fraction of 0.5 s frames in which the stem is within 20 dB of the mixture's level in that frame;
- ``flux_share``: the stem's share of the mixture's positive spectral flux above 1 kHz (onsets: hits, plucks);
  a drums stem that "holds the hits" takes most of it on a song with drums;
- ``band_db``: energy per band (below 250 Hz, 250 Hz-4 kHz, above 4 kHz) relative to the mixture's in that band;
- ``floor_db``: the stem's level against the mixture's in its quietest tenth of the song's loud frames: how far
  the stem falls silent while its instrument pauses. A vocals stem that keeps the drum hits between phrases has
  a high floor; one whose gaps are clean, a low one (compare models on the same song).

    .venv/bin/python scripts/listen_report.py ../shared/examples/*.ogg ../shared/examples/*.mp3 \
        --model resources/models/default.safetensors --out /work/runs/listen
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from stemgui.audio.load import load_audio
from stemgui.eval.report import _pyplot, _save_figure, log_mel, loudest_excerpt
from stemgui.refine import REFINE_CHOICES
from stemgui.separate import SeparationSettings, Separator

FRAME_S = 0.5
BANDS = ((0, 250), (250, 4000), (4000, 22050))


def frame_levels(wav: np.ndarray, rate: int) -> np.ndarray:
    """RMS level in dBFS of each 0.5 s frame of a (channels, samples) signal."""
    size = int(FRAME_S * rate)
    frames = wav.shape[-1] // size
    blocks = wav[..., : frames * size].reshape(wav.shape[0], frames, size)
    power = (blocks.astype(np.float64) ** 2).mean(axis=(0, 2))
    return 10 * np.log10(np.maximum(power, 1e-12))


def band_energy(wav: np.ndarray, rate: int) -> list[float]:
    """Energy of a (channels, samples) signal in each of BANDS."""
    spec = np.abs(np.fft.rfft(wav.astype(np.float64), axis=-1)) ** 2
    freqs = np.fft.rfftfreq(wav.shape[-1], 1 / rate)
    return [float(spec[..., (freqs >= lo) & (freqs < hi)].sum()) for lo, hi in BANDS]


def onset_flux(wav: np.ndarray, rate: int) -> np.ndarray:
    """Positive spectral flux per frame (hop 512) above 1 kHz, in linear power."""
    from scipy.signal import stft

    _, _, spec = stft(wav.astype(np.float64), nperseg=2048, noverlap=2048 - 512, window="hann")
    power = (np.abs(spec) ** 2).mean(axis=0)
    freqs = np.fft.rfftfreq(2048, 1 / rate)
    power = power[freqs >= 1000]
    return np.clip(np.diff(power, axis=-1), 0, None).sum(axis=0)


def describe(mixture: np.ndarray, stems: np.ndarray, sources: list[str], rate: int) -> dict:
    """Figures per stem (see the module docstring)."""
    mix_energy = float((mixture.astype(np.float64) ** 2).sum())
    mix_levels = frame_levels(mixture, rate)
    mix_bands = band_energy(mixture, rate)
    mix_flux = onset_flux(mixture, rate).sum()
    loud = mix_levels > mix_levels.max() - 40
    report = {}
    for name, stem in zip(sources, stems):
        levels = frame_levels(stem, rate)
        relative = (levels - mix_levels)[loud]
        bands = band_energy(stem, rate)
        report[name] = {
            "share_db": round(10 * np.log10(max(float((stem.astype(np.float64) ** 2).sum()), 1e-12) / mix_energy), 2),
            "active": round(float(((levels > mix_levels - 20) & loud).sum() / max(loud.sum(), 1)), 3),
            "flux_share": round(float(onset_flux(stem, rate).sum() / max(mix_flux, 1e-12)), 3),
            "band_db": {f"{lo}-{hi}Hz": round(10 * np.log10(max(b, 1e-12) / max(m, 1e-12)), 2)
                        for (lo, hi), b, m in zip(BANDS, bands, mix_bands)},
            "floor_db": round(float(np.percentile(relative, 10)), 2),
        }
    return report


def figure(path: Path, mixture: np.ndarray, stems: np.ndarray, sources: list[str], rate: int, title: str) -> None:
    """Log-mel of the mixture and each stem over the loudest 15 s (left), stem levels over the song (right)."""
    plt = _pyplot()
    span = loudest_excerpt(mixture, rate, 15.0)
    rows = [("mixture", mixture)] + list(zip(sources, stems))
    fig, axes = plt.subplots(len(rows), 2, figsize=(14, 1.9 * len(rows) + 0.8), squeeze=False,
                             gridspec_kw={"width_ratios": [3, 2]}, layout="constrained")
    mix_mel = log_mel(mixture[..., span], rate)
    top = mix_mel.max()
    t0 = span.start / rate
    mix_levels = frame_levels(mixture, rate)
    times = np.arange(len(mix_levels)) * FRAME_S
    for i, (name, wav) in enumerate(rows):
        mel = log_mel(wav[..., span], rate)
        extent = (t0, t0 + mel.shape[1] * 512 / rate, 0, mel.shape[0])
        axes[i, 0].imshow(mel, origin="lower", aspect="auto", cmap="magma", vmin=top - 80, vmax=top, extent=extent)
        axes[i, 0].set_ylabel(f"{name}\nmel band", fontsize=9)
        if i:
            axes[i, 1].plot(times, mix_levels, color="0.7", lw=1, label="mixture")
        axes[i, 1].plot(times, frame_levels(wav, rate), color="C3" if i else "0.3", lw=1, label=name)
        axes[i, 1].set_ylim(-80, 0)
        axes[i, 1].set_ylabel("dBFS", fontsize=9)
        axes[i, 1].legend(loc="lower right", fontsize=8)
    axes[-1, 0].set_xlabel("time (s)")
    axes[-1, 1].set_xlabel("time (s), whole song")
    fig.suptitle(title)
    _save_figure(fig, path)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("songs", nargs="+", type=Path)
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--refine", default="auto", choices=REFINE_CHOICES,
                        help="mixture refinement (stemgui.refine; default: auto, the model card's)")
    args = parser.parse_args()
    separator = Separator.from_path(args.model, SeparationSettings(refine=args.refine))
    rate = separator.samplerate
    sources = list(separator.sources)
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    for song in args.songs:
        mixture, _ = load_audio(song, samplerate=rate)
        stems = np.asarray(separator.separate(mixture))
        results[song.name] = describe(mixture, stems, sources, rate)
        figure(args.out / f"{song.stem}.png", mixture, stems, sources, rate, f"{song.name} — {args.model.name}")
        print(song.name, json.dumps(results[song.name]), flush=True)
    tmp = args.out / ".listen.json.tmp"
    tmp.write_text(json.dumps({"model": str(args.model), "refine": separator.refine_mode, "songs": results},
                              indent=2) + "\n")
    os.replace(tmp, args.out / "listen.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
