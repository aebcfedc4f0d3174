"""The published-model catalog: `models available` / `models get` against a 127.0.0.1 server serving files the
`demucs` package wrote (random weights, named by the Demucs convention SIG-HASH.th): a good bag, a corrupt file,
a dropped connection, a 404 and no server at all; and bag `.yaml` import with members in the torch hub cache."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from http_server import server  # noqa: F401 - a pytest fixture
from reference import import_demucs
from stemgui import SOURCES
from stemgui.errors import DownloadError, ModelError
from stemgui.models.catalog import get_model, load_catalog

SMALL = {"channels": 4, "depth": 6, "segment": 2.0, "dconv_attn": 9, "dconv_lstm": 9}
WEIGHTS = [[1.0, 1.0, 0.0, 0.5], [0.5, 0.0, 1.0, 1.0]]


def _write_th(folder: Path, sig: str, seed: int) -> Path:
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
def published(tmp_path, server, monkeypatch):  # noqa: F811 - the fixture imported above
    """Two member files on the server, a catalog naming them as a bag and as a single model."""
    files = tmp_path / "served"
    files.mkdir()
    members = [_write_th(files, "a1b2c3d4", 1), _write_th(files, "e5f60718", 2)]
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


def _reference_output(members, mix, weights=None, shifts=0, seed=0):
    import demucs.apply
    from demucs.states import load_model

    models = [load_model(torch.load(f, map_location="cpu", weights_only=False)).float().eval() for f in members]
    bag = demucs.apply.BagOfModels(models, weights)
    random.seed(seed)
    with torch.no_grad():
        return demucs.apply.apply_model(bag, torch.from_numpy(mix)[None], shifts=shifts, split=True,
                                        overlap=0.25)[0].numpy()


def test_get_bag_installs_one_model_matching_the_reference(published, tmp_path):
    from stemgui.models.card import read_card
    from stemgui.models.registry import list_models, resolve_model
    from stemgui.separate import SeparationSettings, Separator

    seen = []
    path = get_model("pair", progress=seen.append)
    assert path == tmp_path / "data" / "models" / "pair.safetensors"
    assert "pair" in [e.name for e in list_models()] and resolve_model("pair") == path
    card = read_card(path)
    assert card["architecture"] == "bag" and card["args"]["weights"] == WEIGHTS
    assert card["licence"] == "test licence" and card["catalog"]["reported_sdr"] == 1.5
    sha = card["training"]["imported_sha256"]
    assert set(sha) == {f.name for f in published}
    for f in published:
        assert sha[f.name].startswith(f.name.split("-")[1][:8]) and len(sha[f.name]) == 64
    assert not (tmp_path / "data" / "downloads" / "pair").exists(), "the .th files are removed once converted"
    assert seen[-1].stage == "convert" and seen[0].file_count == 2
    assert [p.done for p in seen] == sorted(p.done for p in seen)

    mix = (0.1 * np.random.default_rng(0).standard_normal((2, int(44100 * 3.3)))).astype(np.float32)
    for shifts in (0, 1):
        ours = Separator.from_path("pair", SeparationSettings(shifts=shifts, seed=4, device="cpu")).separate(mix)
        ref = _reference_output(published, mix, WEIGHTS, shifts=shifts, seed=4)
        assert np.abs(ours - ref).max() <= 1e-4


def test_single_model_entry_is_a_plain_model_with_the_catalog_segment(published):
    from stemgui.models.card import load_model

    model, card = load_model(get_model("single"))
    assert card["architecture"] == "hdemucs" and model.segment == 3.0


def test_corrupt_file_is_refused_and_nothing_registered(published, server, tmp_path):
    name = f"/sub/{published[1].name}"
    data = bytearray(server.files[name])
    data[len(data) // 2] ^= 0xFF
    server.files[name] = bytes(data)
    with pytest.raises(DownloadError, match="checksum mismatch"):
        get_model("pair")
    assert not (tmp_path / "data" / "models" / "pair.json").exists()
    assert not list((tmp_path / "data" / "downloads" / "pair").glob("e5f60718*"))


def test_dropped_connection_resumes_on_the_next_call(published, server):
    name = f"/sub/{published[0].name}"
    server.truncate.add(name)
    with pytest.raises(DownloadError, match="interrupted .*run it again to resume"):
        get_model("pair")
    path = get_model("pair")
    assert path.is_file()
    assert any(rng and rng.startswith("bytes=") and p == name for p, rng in server.requests)


def test_404_and_offline_are_one_clear_line(published, server, monkeypatch):
    with pytest.raises(DownloadError, match=r"0badf00d-12345678\.th: HTTP error 404") as err:
        get_model("missing")
    assert "\n" not in str(err.value)
    monkeypatch.setenv("STEMGUI_MODEL_ROOT", "http://127.0.0.1:9")  # discard port: nothing listens
    with pytest.raises(DownloadError, match="cannot connect") as err:
        get_model("single", timeout=5)
    assert "\n" not in str(err.value)
    with pytest.raises(ModelError, match="'nope' is not in the model catalog"):
        get_model("nope")


def test_cli_available_and_get(published, capsys):
    from stemgui.cli import main

    assert main(["models", "available"]) == 0
    out = capsys.readouterr().out
    assert "pair" in out and "[available]" in out and "test licence" in out
    assert main(["models", "get", "pair", "--yes"]) == 0
    assert "installed 'pair'" in capsys.readouterr().out
    assert main(["models", "available"]) == 0
    assert "pair          [installed]" in capsys.readouterr().out
    assert main(["models", "get", "missing", "--yes"]) == 1
    err = capsys.readouterr().err
    assert "stemgui: error:" in err and "HTTP error 404" in err and "Traceback" not in err


def test_real_catalog_is_complete():
    catalog = load_catalog()
    names = [e.name for e in catalog.entries]
    assert names == ["htdemucs", "htdemucs_ft", "htdemucs_6s", "hdemucs_mmi", "mdx",
                     "mdx_extra", "repro_mdx_a"]
    assert catalog.root == "https://dl.fbaipublicfiles.com/demucs/" and "research" in catalog.licence.lower()
    assert catalog.find("mdx_extra").musdb_test_in_training
    assert catalog.find("htdemucs_6s").sources[-2:] == ["guitar", "piano"]
    for e in catalog.entries:
        for f in e.files:
            assert Path(f).name.count("-") == 1 and f.endswith(".th")
        if e.weights is not None:
            assert len(e.weights) == len(e.files) and all(len(r) == len(e.sources) for r in e.weights)


def test_bag_yaml_import_finds_members_in_the_torch_hub_cache(tmp_path, monkeypatch):
    from stemgui.models.card import read_card
    from stemgui.models.legacy import import_to_card

    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    members = [_write_th(hub, "a1b2c3d4", 1), _write_th(tmp_path, "e5f60718", 2)]  # one in the cache, one beside
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    yaml = tmp_path / "my_bag.yaml"
    yaml.write_text("models: ['a1b2c3d4', 'e5f60718']\nweights: [[1., 1., 0., 0.5], [0.5, 0., 1., 1.]]\n")
    out = import_to_card(yaml, tmp_path / "models", "my_bag")
    card = read_card(out)
    assert card["training"]["imported_members"] == [m.name for m in members]
    yaml.write_text("models: ['a1b2c3d4', 'deadbeef']\n")
    with pytest.raises(ModelError, match="member model 'deadbeef' not found"):
        import_to_card(yaml, tmp_path / "models", "broken")
    yaml.write_text("weights: [1]\n")
    with pytest.raises(ModelError, match="not a Demucs bag"):
        import_to_card(yaml, tmp_path / "models", "broken")
