#!/usr/bin/env bash
# Train the bundled default separator (resources/models/default.safetensors) on the synthetic multitracks.
#
# Resumable: run the same command again after a crash, kill or reboot and it continues from the last checkpoint
# in $RUN_DIR (checkpoints live outside git). Extra arguments are passed to `stemgui train`, e.g.
#   scripts/train_default.sh --steps 20        # a short smoke run
#   STEPS=40000 RUN_DIR=/data/runs/default scripts/train_default.sh
# Generator: HDemucs channels=8, depth=6, nfft=4096: the published layout at 1/6 width. On a CPU budget of a
# few hours the model is starved of data, not of capacity: in a paired comparison (same seed, same batches) a
# channels=8 model reached the same training losses per step as channels=16 over the first 100 steps while a
# step costs 1.7x less (benchmarks/train_speed.py --channels 8: 1.8 vs 3.0 s for l1+stft, 2 threads), and it
# separates about twice as fast. CHANNELS=16 (9.3 M parameters) is the choice for a longer run.
#
# The bundled model (card: resources/models/default.json) was made with exactly this script, in steps (each a
# SIGTERM, which checkpoints, then the same command again): run with defaults and LR_DECAY=none to step 1,002;
# resumed with D_WARMUP=1002 LR_DECAY=none (the discriminator starts there) to step 1,417; resumed with STEPS=3300
# DECAY_START=1417 (cosine from 1e-2 to 5e-4) to the end; then scored with `stemgui evaluate`,
# scripts/listen_report.py and scripts/card_add_metrics.py. That was the first version; the second was
# it fine-tuned with real singing on every second step, a recipe decided by a paired A/B (scripts/data_ab.py; the
# card's training.ab_real_singing):
#   DATASET=/work/runs/synth3 RUN_DIR=/work/runs/default2/run OUT=/work/runs/default2/default.safetensors \
#   D_WARMUP=200 RMS_WARMUP=0 LR_DECAY=cosine DECAY_START=300 LR_MIN_RATIO=0.1 VALID_EVERY=750 SEED=43 \
#   TWO_STEM_EVERY=2 BASE_MODEL=resources/models/default.safetensors FT_LR=5e-4 \
#   scripts/train_default.sh --set train.minutes=76 --set data.real_voice=true --no-progress
# (synth3: `stemgui synth-dataset /work/runs/synth3 --songs 200 --seconds 20 --seed 2000 --jobs 2`).
# The third version was that one trained on with the same recipe and a fresh cosine, and the fourth, bundled now,
# the third trained on again the same way (SEED=45, train.minutes=62; card: lineage in training.finetune.base_training):
#   DATASET=/work/runs/synth3 RUN_DIR=/work/runs/default3/run OUT=/work/runs/default3/default.safetensors \
#   D_WARMUP=200 RMS_WARMUP=0 LR_DECAY=cosine DECAY_START=100 LR_MIN_RATIO=0.1 VALID_EVERY=750 SEED=44 \
#   TWO_STEM_EVERY=2 BASE_MODEL=resources/models/default.safetensors FT_LR=5e-4 \
#   scripts/train_default.sh --set train.minutes=78 --set data.real_voice=true --set optim.ema_warmup=false --no-progress
# Tried and NOT shipped (session 13): the fourth version widened x2 (`stemgui models widen`, 9.3 M parameters, exact
# start) trained 3,198 more steps with the same recipe (/work/runs/default5/train.sh). Synthetic songs improved
# (held-out uSDR 2.61 -> 2.70 dB) but the model learnt a spike of up to 300x full scale in the last few dozen
# samples of an input whose length is not the training segment's: real-voice GNSDR fell to 0.21 / -7.37 dB (its
# validation, on whole clips, dropped between steps 2,000 and 2,500). A run like it needs a guard on that edge.
# Tried and NOT shipped (session 14): refinement in the loop (`--set loss.refine=vocals`, the objective scores the
# stems the app plays), paired against the same 400-step fine-tune without it (card: training.ab_refine_in_loop):
# better on synthetic songs (uSDR 3.04 -> 3.24 dB) and real singing (5.77 -> 5.90 dB), but its vocals stem keeps
# more drum onsets on the real songs and grows a steady treble line.
# Tried and NOT shipped (session 15): drum-only segments (`--set augment.solo_share=0.2`), paired against the
# same 400-step fine-tune without them (card: training.ab_drum_solo; /work/runs/ab-solo/arms2.sh ran this script):
# drums in the raw vocals -0.29 dB, but raw vocals uSDR -0.10 dB; after the clean-up better on synthetic songs, but
# the real songs' vocals floor between phrases 0.6-1.0 dB higher.
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
D_WARMUP="${D_WARMUP:-1500}"     # generator-only steps before the discriminator starts
# Generator optimizer for a short CPU budget: Adam β(0.9, 0.999) at 1e-2 (the seed study: 3e-4 β(0.5, 0.9)),
# and the RMS error in place of L1 for the first RMS_WARMUP steps (loss.rms_warmup_steps). Paired runs on the
# same batches (channels=8, l1+stft, session 2), uSDR on 6 held-out excerpts after 100 steps (raw weights):
#   L1, lr 2e-3                 -0.04 ... -0.09 dB at steps 200-300: outputs shrink to near silence
#   RMS warm-up, lr 2e-3         0.09 / -0.01 / 0.04 / 0.13 dB (drums / bass / other / vocals)
#   RMS warm-up, lr 1e-2         0.43 / 0.46 / 0.40 / 0.79 dB
# (and 3e-4 β(0.5, 0.9), 1e-3 and 3e-3 with L1 followed the same near-silent loss curve for 80-200 steps).
# The discriminator keeps the seed study's 2e-4 β(0.5, 0.9).
LR="${LR:-1e-2}"
# Then a half-cosine decay of G's rate from LR at DECAY_START to LR * LR_MIN_RATIO at the last step (STEPS):
# a rate that lets a fresh model find the sources is too coarse for the details (optim.lr_decay). LR_DECAY=none
# keeps it constant. Continuing a finished run with a larger STEPS restarts the cosine from where it stands.
LR_DECAY="${LR_DECAY:-cosine}"
DECAY_START="${DECAY_START:-1000}"
LR_MIN_RATIO="${LR_MIN_RATIO:-0.05}"
RMS_WARMUP="${RMS_WARMUP:-1000}"
BETAS="${BETAS:-[0.9, 0.999]}"
EMA="${EMA:-0.99}"               # EMA of G's weights; a fast-moving short run needs a short memory
VALID_EVERY="${VALID_EVERY:-250}"
SEED="${SEED:-42}"
CHANNELS="${CHANNELS:-8}"        # generator width (see the header)
# Real singing (issue 16): every TWO_STEM_EVERY-th step trains on MIR-1K's (voice, karaoke accompaniment) pairs of
# the singers the real-voice check does not use, the loss comparing the model's vocals with the voice and the sum
# of its other stems with the accompaniment (stemgui.train.grouping). TWO_STEM_EVERY=0 switches it off.
TWO_STEM_DATASET="${TWO_STEM_DATASET:-$REPO/../shared/datasets/mir-1k-subset}"
TWO_STEM_EVERY="${TWO_STEM_EVERY:-0}"
# BASE_MODEL: continue from a trained model (the fine-tuning path: its own size, FT_LR as its rate).
BASE_MODEL="${BASE_MODEL:-}"
FT_LR="${FT_LR:-5e-4}"

if [[ ! -d "$DATASET/train" ]]; then
    echo "train_default.sh: $DATASET/train not found (generate it with: stemgui synth ...)" >&2
    exit 1
fi

EXTRA=()
if [[ "$TWO_STEM_EVERY" != 0 ]]; then
    EXTRA+=(--set "data.two_stem_dataset=$TWO_STEM_DATASET" --set "data.two_stem_every=$TWO_STEM_EVERY")
fi
if [[ -n "$BASE_MODEL" ]]; then
    EXTRA+=(--base-model "$BASE_MODEL" --set "finetune.lr=$FT_LR")
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
    --model-channels "$CHANNELS" --depth 6 --nfft 4096 \
    --d-warmup-steps "$D_WARMUP" \
    --checkpoint-every 100 \
    --valid-every "$VALID_EVERY" \
    --lr "$LR" \
    --set "optim.betas=$BETAS" \
    --set "optim.ema_decay=$EMA" \
    --set "optim.lr_decay=$LR_DECAY" \
    --set "optim.decay_start=$DECAY_START" \
    --set "optim.lr_min_ratio=$LR_MIN_RATIO" \
    --set "loss.rms_warmup_steps=$RMS_WARMUP" \
    --workers "$WORKERS" \
    --seed "$SEED" \
    --set "train.threads=$THREADS" \
    --set "train.keep_best=true" \
    "${EXTRA[@]}" \
    "${RESUME[@]}" \
    "$@"
