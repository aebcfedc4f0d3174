#!/usr/bin/env bash
# Train the bundled default separator (resources/models/default.safetensors) on the synthetic multitracks.
#
# Resumable: run the same command again after a crash, kill or reboot and it continues from the last checkpoint
# in $RUN_DIR (checkpoints live outside git). Extra arguments are passed to `stemgui train`, e.g.
#   scripts/train_default.sh --steps 20        # a short smoke run
#   STEPS=40000 RUN_DIR=/data/runs/default scripts/train_default.sh
# Generator: HDemucs channels=16, depth=6, nfft=4096 (9.3 M parameters): the published layout at 1/3 width,
# which separates well under real time on 2 CPU cores (see the issue notes for the measured figures).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
DATASET="${DATASET:-/work/data/synth}"
RUN_DIR="${RUN_DIR:-/work/runs/default}"
OUT="${OUT:-$REPO/resources/models/default.safetensors}"
STEPS="${STEPS:-20000}"
BATCH="${BATCH:-4}"
SEGMENT="${SEGMENT:-2}"
WORKERS="${WORKERS:-1}"
THREADS="${THREADS:-2}"          # torch threads (use 1 if other jobs share a 2-core machine); 0 = torch default
D_WARMUP="${D_WARMUP:-1000}"     # generator-only steps before the discriminator starts
# Generator optimizer for a short CPU budget: lr 1e-3 with Adam β(0.9, 0.999) instead of the seed study's
# 3e-4 β(0.5, 0.9): over the same first 90 batches it had 3-5 % lower L1 and 5-10 % lower STFT loss, with
# the gap growing (A/B with one seed, session 2). The discriminator keeps the seed study's 2e-4 β(0.5, 0.9).
LR="${LR:-1e-3}"
BETAS="${BETAS:-[0.9, 0.999]}"
EMA="${EMA:-0.995}"              # EMA of G's weights; short runs need a short memory
VALID_EVERY="${VALID_EVERY:-250}"
SEED="${SEED:-42}"

if [[ ! -d "$DATASET/train" ]]; then
    echo "train_default.sh: $DATASET/train not found (generate it with: stemgui synth ...)" >&2
    exit 1
fi

RESUME=()
if [[ -f "$RUN_DIR/latest.json" ]]; then
    echo "train_default.sh: resuming from $RUN_DIR/latest.json" >&2
    RESUME=(--resume)
fi

mkdir -p "$RUN_DIR"
cd "$REPO"
exec "$PYTHON" -m stemgui train \
    --dataset "$DATASET" \
    --preset l1+stft+gan \
    --steps "$STEPS" \
    --segment "$SEGMENT" \
    --batch-size "$BATCH" \
    --out "$OUT" \
    --run-dir "$RUN_DIR" \
    --log "$RUN_DIR/log.jsonl" \
    --model-channels 16 --depth 6 --nfft 4096 \
    --d-warmup-steps "$D_WARMUP" \
    --checkpoint-every 100 \
    --valid-every "$VALID_EVERY" \
    --lr "$LR" \
    --set "optim.betas=$BETAS" \
    --set "optim.ema_decay=$EMA" \
    --workers "$WORKERS" \
    --seed "$SEED" \
    --set "train.threads=$THREADS" \
    "${RESUME[@]}" \
    "$@"
