#!/usr/bin/env python3
"""Copy study runs into resources/listening/models/ as float16 weights + card, for the shipped listening test.

The example test (resources/listening/example.toml) compares the bundled model with an L1-only and an
`l1+stft+gan` model of the ablation study; users should not have to train those first. Float16 halves the
files (4.7 MB each for the bundled size); the script measures what that costs on one song and writes it into
each card (`stored_dtype_check`):

    .venv/bin/python scripts/ship_listening_models.py /work/runs/ablation.study \
        l1_seed1=ablation-l1 l1+stft+gan_seed1=ablation-l1-stft-gan --song ../shared/examples/example.wav
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stemgui.atomic import atomic_write_text  # noqa: E402
from stemgui.audio import load_audio  # noqa: E402
from stemgui.eval.metrics import usdr  # noqa: E402
from stemgui.models.card import card_path, load_model, read_card, save_model  # noqa: E402
from stemgui.separate import SeparationSettings, Separator  # noqa: E402

log = logging.getLogger("ship_listening_models")


def half_precision_gap(full: Path, half: Path, song: Path, seconds: float) -> dict[str, float]:
    """SDR (dB) of the float16 model's stems against the float32 model's on `seconds` of `song`, per stem."""
    ref_sep, half_sep = (Separator.from_path(str(p), SeparationSettings(device="cpu")) for p in (full, half))
    wav, rate = load_audio(song, ref_sep.samplerate, channels=ref_sep.audio_channels)
    wav = wav[:, : int(seconds * rate)]
    ref, est = np.asarray(ref_sep.separate(wav)), np.asarray(half_sep.separate(wav))
    scores = usdr(ref, est)  # (sources,): the float32 stems as the reference
    return {name: round(float(score), 1) for name, score in zip(ref_sep.sources, scores)}


def ship_float16(src: Path, dest: Path, card: dict, song: Path, seconds: float) -> dict[str, float]:
    """Write the model at `src` to `dest` as float16 weights with `card`, and record in that card what the
    halving costs: the float16 stems' SDR against the float32 stems' on `seconds` of `song`."""
    model, _ = load_model(src)
    dest = save_model(model, dest, card, stored_dtype=torch.float16)
    gap = half_precision_gap(src, dest, song, seconds)
    shipped = read_card(dest)  # the weights stay as written; only their card gains the check
    shipped["stored_dtype_check"] = {"song": song.name, "seconds": seconds, "sdr_of_float16_vs_float32_db": gap}
    atomic_write_text(card_path(dest), json.dumps(shipped, indent=2) + "\n")
    log.info("%s -> %s (%.1f MB); float16 vs float32 SDR %s dB", src, dest, dest.stat().st_size / 1e6, gap)
    return gap


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", type=Path, help="the study folder (its runs/<run>/<run>.safetensors)")
    parser.add_argument("runs", nargs="+", help="RUN=NAME: the study run and the shipped file's name")
    parser.add_argument("--out", type=Path, default=REPO / "resources" / "listening" / "models")
    parser.add_argument("--song", type=Path, required=True, help="song the float16 copy is checked on")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--origin", default="a study run shipped for the example listening test, stored in float16",
                        help="what the cards say about where the models come from")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    study_name = args.study.name.removesuffix(".study")
    for item in args.runs:
        run, _, name = item.partition("=")
        if not name:
            parser.error(f"{item}: expected RUN=NAME")
        src = args.study / "runs" / run / f"{run}.safetensors"
        card = dict(read_card(src), name=name)
        card["origin"] = {"study": study_name, "run": run, "note": args.origin}
        ship_float16(src, args.out / f"{name}.safetensors", card, args.song, args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
