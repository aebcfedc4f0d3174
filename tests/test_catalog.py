"""The published-model catalog: `models available` / `models get` against a 127.0.0.1 server serving files the
`demucs` package wrote (random weights, named by the Demucs convention SIG-HASH.th): a good bag, a corrupt file,
a dropped connection, a 404 and no server at all; and bag `.yaml` import with members in the torch hub cache."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from stemgui.errors import DownloadError, ModelError
from stemgui.models.catalog import get_model, load_catalog

from http_server import server  # noqa: F401 - a pytest fixture
from published_fixtures import WEIGHTS, published, write_th  # noqa: F401 - fixtures


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
    members = [write_th(hub, "a1b2c3d4", 1), write_th(tmp_path, "e5f60718", 2)]  # one in the cache, one beside
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
