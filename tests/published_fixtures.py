"""Files the `demucs` package writes, served as a published catalog from 127.0.0.1 (catalog and GUI tests)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from stemgui import SOURCES

from reference import import_demucs

SMALL = {"channels": 4, "depth": 6, "segment": 2.0, "dconv_attn": 9, "dconv_lstm": 9}
WEIGHTS = [[1.0, 1.0, 0.0, 0.5], [0.5, 0.0, 1.0, 1.0]]


def write_th(folder: Path, sig: str, seed: int) -> Path:
    """A small reference HDemucs saved exactly as the Demucs project publishes (float16, SIG-HASH.th)."""
    import_demucs()
    from demucs.hdemucs import HDemucs
    from demucs.states import save_with_checksum, serialize_model
    from omegaconf import OmegaConf

    torch.manual_seed(seed)
    model = HDemucs(list(SOURCES), **SMALL)
    save_with_checksum(serialize_model(model, OmegaConf.create({"seed": seed})), folder / f"{sig}.th")
    (path,) = folder.glob(f"{sig}-*.th")
    return path


@pytest.fixture
def published(tmp_path, server, monkeypatch):
    """Two member files on the server, a catalog naming them as a bag and as a single model."""
    files = tmp_path / "served"
    files.mkdir()
    members = [write_th(files, "a1b2c3d4", 1), write_th(files, "e5f60718", 2)]
    for f in members:
        server.files[f"/sub/{f.name}"] = f.read_bytes()
    catalog = {
        "format": "stemgui-catalog/1", "root": "https://example.invalid/", "publisher": "tests",
        "licence": "test licence",
        "models": [
            {"name": "pair", "title": "A pair", "architecture": "bag", "sources": list(SOURCES),
             "files": [f"sub/{f.name}" for f in members], "weights": WEIGHTS, "segment": None,
             "reported_sdr": 1.5},
            {"name": "single", "title": "One", "architecture": "hdemucs", "sources": list(SOURCES),
             "files": [f"sub/{members[0].name}"], "segment": 3},
            {"name": "missing", "title": "Gone", "files": ["sub/0badf00d-12345678.th"]},
        ],
    }
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(catalog))
    monkeypatch.setenv("STEMGUI_CATALOG", str(path))
    monkeypatch.setenv("STEMGUI_MODEL_ROOT", server.url)
    monkeypatch.setenv("STEMGUI_DATA_DIR", str(tmp_path / "data"))
    return members


