#!/usr/bin/env bash
# Render the synthetic training and test sets (MUSDB18-HQ layout) used for the default model.
# Usage: scripts/make_datasets.sh [OUT_DIR] [JOBS]     (default OUT_DIR=/work/data/synth, JOBS=1)
# Train songs use seed 1, test songs seed 1000 and held-out MIR-1K singers. Rerunning resumes: finished
# songs with the same settings are kept. ~11 GB of 32-bit float WAV for the defaults below.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-/work/data/synth}"
JOBS="${2:-1}"
PY="${PYTHON:-.venv/bin/python}"
"$PY" -m stemgui synth-dataset "$OUT" --songs 200 --seconds 30 --seed 1 --subset train --jobs "$JOBS"
"$PY" -m stemgui synth-dataset "$OUT" --songs 20 --seconds 30 --seed 1000 --subset test --jobs "$JOBS"
