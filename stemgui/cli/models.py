"""`stemgui models`: list models with their cards, show one card, import official Hybrid Demucs weights."""

from __future__ import annotations

import argparse
import json


def register(sub) -> None:
    p = sub.add_parser("models", help="list, show or import models",
                       description="With no action, lists the bundled default first, then user models.")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    show = actions.add_parser("show", help="print a model's card")
    show.add_argument("model", help="model name or path")
    imp = actions.add_parser("import", help="convert a Demucs .th or torchaudio HDemucs checkpoint to a user model")
    imp.add_argument("file", help="checkpoint file (.th, .pt, .pth)")
    imp.add_argument("--name", default=None, help="name of the new model (default: the file's name)")
    dl = actions.add_parser("download", help="download a model file (resumable, checksum-verified)")
    dl.add_argument("url")
    dl.add_argument("--sha256", default=None, help="expected sha256 of the file")
    dl.add_argument("--name", default=None, help="name of the new model (default: the file's name)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from stemgui.models.card import read_card
    from stemgui.models.registry import list_models, resolve_model

    if args.action is None:
        entries = list_models()
        if not entries:
            print("no models installed")
            return 0
        for entry in entries:
            print(entry.summary)
            print(f"    {entry.path}")
        return 0
    if args.action == "show":
        print(json.dumps(read_card(resolve_model(args.model)), indent=2))
        return 0
    if args.action == "import":
        return _import(args.file, args.name)
    if args.action == "download":
        return _download(args.url, args.sha256, args.name)
    return 2


def _import(path: str, name: str | None) -> int:
    from pathlib import Path

    from stemgui.models.legacy import import_to_card
    from stemgui.paths import user_models_dir

    name = name or Path(path).stem
    dest = import_to_card(path, user_models_dir(), name)
    print(f"imported {path} as model '{name}': {dest}")
    return 0


def _download(url: str, sha256: str | None, name: str | None) -> int:
    import sys
    import tempfile
    from pathlib import Path
    from urllib.parse import urlparse

    from tqdm import tqdm

    from stemgui.models.download import download

    filename = Path(urlparse(url).path).name or "model.th"
    target = Path(tempfile.gettempdir()) / "stemgui-downloads" / filename
    with tqdm(unit="B", unit_scale=True, desc=filename, file=sys.stderr) as bar:
        def progress(done: int, total: int | None) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        download(url, target, sha256=sha256, progress=progress)
    return _import(str(target), name or Path(filename).stem)
