"""`stemgui models`: list, show, import, and fetch published models from the catalog."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub) -> None:
    p = sub.add_parser("models", help="list, show, import or download models",
                       description="With no action, lists the bundled default first, then user models.")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    show = actions.add_parser("show", help="print a model's card")
    show.add_argument("model", help="model name or path")
    imp = actions.add_parser("import", help="convert a Demucs .th (HTDemucs, HDemucs, Demucs v2), a bag .yaml "
                                            "or a torchaudio HDemucs checkpoint to a user model")
    imp.add_argument("file", help="checkpoint file (.th, .pt, .pth) or Demucs bag (.yaml)")
    imp.add_argument("--name", default=None, help="name of the new model (default: the file's name)")
    actions.add_parser("available", help="list the published models of the catalog and which are installed")
    get = actions.add_parser("get", help="download, verify, convert and install a published model")
    get.add_argument("name", help="catalog name, e.g. htdemucs (see `stemgui models available`)")
    get.add_argument("--yes", "-y", action="store_true", help="accept the weights' licence without asking")
    dl = actions.add_parser("download", help="download a model file (resumable, checksum-verified)")
    dl.add_argument("url")
    dl.add_argument("--sha256", default=None, help="expected sha256 of the file")
    dl.add_argument("--name", default=None, help="name of the new model (default: the file's name)")
    widen = actions.add_parser("widen", help="make a wider Hybrid Demucs that separates exactly as the given one, "
                                             "to fine-tune (Net2WiderNet)")
    widen.add_argument("model", help="model name or path (an hdemucs model)")
    widen.add_argument("out", help="where to write the wide model (.safetensors; its card beside it)")
    widen.add_argument("--factor", type=int, default=2, help="width multiplier (default 2)")
    widen.add_argument("--seed", type=int, default=0, help="seed of the random shares that split the copies")
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
    if args.action == "available":
        return _available()
    if args.action == "get":
        return _get(args.name, args.yes)
    if args.action == "download":
        return _download(args.url, args.sha256, args.name)
    if args.action == "widen":
        from stemgui.train.widen import widen_model_file

        out = widen_model_file(args.model, args.out, args.factor, args.seed)
        print(f"wrote {out}")
        return 0
    return 2


def _import(path: str, name: str | None) -> int:
    from pathlib import Path

    from stemgui.models.legacy import import_to_card
    from stemgui.paths import user_models_dir

    name = name or Path(path).stem
    dest = import_to_card(path, user_models_dir(), name)
    print(f"imported {path} as model '{name}': {dest}")
    return 0


def _available() -> int:
    from stemgui.models.catalog import installed_names, load_catalog

    catalog = load_catalog()
    have = installed_names()
    print(f"Published models ({catalog.publisher}); weights: {catalog.licence}")
    for e in catalog.entries:
        state = "installed" if e.name in have else "available"
        size = f"{e.size_mb:.0f} MB" if e.size_mb else "size n/a"
        members = f", bag of {len(e.files)}" if len(e.files) > 1 else ""
        print(f"{e.name:13s} [{state}] {e.title}{members} | {', '.join(e.sources)} | {size} | {e.quality}")
        print(f"{'':13s}   {e.description}")
        if e.musdb_test_in_training:
            print(f"{'':13s}   note: its training data includes the MUSDB18 test set")
    return 0


def _get(name: str, yes: bool) -> int:
    from tqdm import tqdm

    from stemgui.errors import StemGUIError
    from stemgui.models.catalog import get_model, load_catalog

    catalog = load_catalog()
    entry = catalog.find(name)
    print(f"{entry.name}: {entry.title} — {len(entry.files)} file(s) from {catalog.publisher}.", file=sys.stderr)
    print(f"Licence: {catalog.licence}", file=sys.stderr)
    if not yes:
        if not sys.stdin.isatty():
            raise StemGUIError(f"{name}: accept the weights' licence above with --yes (no terminal to ask on)")
        answer = input("Download and install? [y/N] ").strip().lower()
        if answer not in ("y", "yes"):
            print("not downloaded", file=sys.stderr)
            return 1
    bar = tqdm(unit="B", unit_scale=True, unit_divisor=1024, desc=name, file=sys.stderr, dynamic_ncols=True)
    try:
        def progress(p) -> None:
            bar.total = p.total
            bar.n = p.done
            bar.set_postfix_str(f"file {p.file_index + 1}/{p.file_count}" if p.stage == "download" else "converting",
                                refresh=False)
            bar.refresh()

        path = get_model(name, catalog=catalog, progress=progress)
    finally:
        bar.close()
    print(f"installed '{name}': {path}")
    return 0


def _download(url: str, sha256: str | None, name: str | None) -> int:
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
