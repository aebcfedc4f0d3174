#!/usr/bin/env python3
"""Install a trained model as the bundled default: float16 weights and its card in resources/models/.

Float16 halves the file (the wheel carries it; tests/test_packaging.py holds the wheel under 40 MiB); what that
costs is measured on a real song and written into the card (`stored_dtype_check`). Scores are added afterwards
with scripts/card_add_metrics.py.

    .venv/bin/python scripts/ship_default_model.py /work/runs/default5/default.safetensors \
        --song ../shared/examples/karissa-hobbs-lets-go-fishin.ogg
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ship_listening_models import REPO, ship_float16  # noqa: E402

from stemgui.models.card import read_card  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="the trained model (.safetensors with its card)")
    parser.add_argument("--song", type=Path, required=True, help="song the float16 copy is checked on")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--out", type=Path, default=REPO / "resources" / "models" / "default.safetensors")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    card = dict(read_card(args.model), name="default")
    ship_float16(args.model, args.out, card, args.song, args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
