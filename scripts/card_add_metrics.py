"""Write held-out scores from `stemgui evaluate` summaries into a model's JSON card (atomically).

    .venv/bin/python scripts/card_add_metrics.py resources/models/default.json \
        --summary runs/eval-default/summary.csv --system default \
        --baselines runs/eval-oracle/summary.csv --test-set "20 synthetic songs, seed 1000" \
        --notes notes.md

The card keeps its weights hash; only `metrics` (and optionally `notes`) change.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
from pathlib import Path

KEYS = ("SDR", "uSDR", "SI-SDR", "SIR", "SAR", "ISR")


def read_summary(path: Path) -> dict[str, dict[str, dict[str, float]]]:
    """{system: {source: {metric: value}}} from a summary.csv written by `stemgui evaluate`."""
    table: dict[str, dict[str, dict[str, float]]] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            table.setdefault(row["system"], {})[row["source"]] = {
                k: round(float(row[k]), 3) for k in KEYS if row.get(k) not in (None, "", "nan")}
    return table


def training_history(log: Path, last: int = 100) -> dict:
    """Mean of each loss over the last `last` logged steps, and every validation result, from a run's log."""
    train, valid = [], []
    for line in log.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record.get("event") == "train":
            train.append(record)
        elif record.get("event") == "valid":
            valid.append(record)
    final_step = train[-1]["step"] if train else 0
    recent = [r for r in train if r["step"] > final_step - last]
    names = sorted({k for r in recent for k in r} & {"l1", "stft", "stft_sc", "stft_mag", "adv", "fm", "d_loss",
                                                      "d_real", "d_fake", "loss"})
    final = {k: round(sum(r[k] for r in recent if k in r) / max(1, sum(k in r for r in recent)), 5) for k in names}
    history = [{k: v for k, v in r.items() if k not in ("time", "event")} for r in valid]
    return {"final_losses": {"steps": f"{max(0, final_step - last) + 1}-{final_step}", **final},
            "validation_history": history}


def real_voice_block(path: Path, system: str) -> dict:
    """The card's `metrics.real_voice` from evaluate's real_voice.json (its summary for `system`)."""
    summaries = json.loads(path.read_text(encoding="utf-8"))["summary"]
    if system not in summaries:
        raise SystemExit(f"{path}: no real-voice summary for system '{system}' (have {', '.join(summaries)})")
    from stemgui.data.mir1k import HELD_OUT_SINGERS

    found = summaries[system]
    return {"gnsdr_db": found["gnsdr"], "usdr_mean_db": found["usdr_mean"], "clips": found["clips"],
            "seconds": found["seconds"],
            "set": f"MIR-1K held-out singers {' + '.join(HELD_OUT_SINGERS)} (stemgui.data.mir1k.HELD_OUT_SINGERS), "
                   "vocals vs accompaniment (sum of the other stems), 44.1 kHz",
            "command": "stemgui evaluate --model MODEL --real-voice --out DIR",
            "goal": "vocals >= 5 dB, accompaniment >= 3 dB (issue 16)"}


def leakage_block(path: Path, system: str, test_set: str) -> dict:
    """The card's `metrics.leakage` from evaluate's leakage.csv: each other source's level in each of the
    system's estimates, and the ideal ratio mask's where the evaluation compared with it."""
    levels: dict[str, dict[str, dict[str, float]]] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            levels.setdefault(row["system"], {}).setdefault(row["estimate"], {})[row["source_in_it"]] = \
                round(float(row["level_db"]), 2)
    if system not in levels:
        raise SystemExit(f"{path}: no leakage rows for system '{system}' (have {', '.join(levels)})")
    block = {"set": test_set,
             "what": "each other source's part of an estimate (BSSEval v4 whole-track projection, 512-tap filters) "
                     "against the estimate's own source, dB, mean over songs; lower is cleaner",
             "command": "stemgui evaluate --model MODEL --compare irm --dataset DIR --subset test --out OUT "
                        "(leakage.csv)",
             "mean_db": levels[system]}
    if "oracle-IRM" in levels:
        block["ideal_ratio_mask_db"] = levels["oracle-IRM"]
    return block


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("card", type=Path)
    parser.add_argument("--summary", type=Path, required=True)
    parser.add_argument("--system", required=True, help="the model's row name in the summary")
    parser.add_argument("--baselines", type=Path, help="summary.csv with oracle systems (oracle-IRM, mixture)")
    parser.add_argument("--test-set", required=True, help="what the held-out set is")
    parser.add_argument("--notes", type=Path, help="a text file with listening notes for the card")
    parser.add_argument("--log", type=Path, help="the run's log.jsonl: adds final losses and the validation history")
    parser.add_argument("--real-voice", type=Path,
                        help="real_voice.json from `stemgui evaluate --real-voice`: the system's GNSDR into the card")
    parser.add_argument("--leakage", type=Path,
                        help="leakage.csv from `stemgui evaluate`: how loud each other source is in each estimate")
    parser.add_argument("--listen", type=Path, help="listen.json from scripts/listen_report.py (real songs)")
    args = parser.parse_args()
    card = json.loads(args.card.read_text(encoding="utf-8"))
    ours = read_summary(args.summary)
    if args.system not in ours:
        raise SystemExit(f"{args.summary}: no rows for system '{args.system}' (have {', '.join(ours)})")
    test = {"set": args.test_set, "aggregation": "median over 1 s frames, then median over tracks (SDR/SIR/SAR/ISR); "
            "uSDR and SI-SDR: mean over tracks", "model": ours[args.system]}
    if args.baselines:
        test["baselines"] = {name: rows for name, rows in read_summary(args.baselines).items()}
    card.setdefault("metrics", {})["test"] = test
    per_source = [v["uSDR"] for k, v in ours[args.system].items() if k != "overall" and "uSDR" in v]
    card["metrics"]["test_usdr_mean"] = round(sum(per_source) / len(per_source), 3)
    if args.log:
        card.setdefault("training", {}).update(training_history(args.log))
    if args.listen:
        card["metrics"]["real_songs"] = json.loads(args.listen.read_text(encoding="utf-8"))["songs"]
    if args.real_voice:
        card["metrics"]["real_voice"] = real_voice_block(args.real_voice, args.system)
    if args.leakage:
        card["metrics"]["leakage"] = leakage_block(args.leakage, args.system, args.test_set)
    if args.notes:
        card["notes"] = args.notes.read_text(encoding="utf-8").strip()
    tmp = args.card.with_name(f".{args.card.name}.tmp")
    tmp.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, args.card)
    print(f"{args.card}: metrics.test written ({len(ours[args.system])} rows)")


if __name__ == "__main__":
    main()
