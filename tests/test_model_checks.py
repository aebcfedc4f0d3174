"""Model configurations that cannot run are one clear line before any work starts, for every registered
architecture: a table of bad settings per architecture, the boundary values that must still work, and cards
whose arguments cannot run refused with the file's name."""

from __future__ import annotations

import json

import pytest

from stemgui.errors import ModelError
from stemgui.models.architectures import architecture_names
from stemgui.models.check import check_model_config

SOURCES = ["drums", "bass", "other", "vocals"]
SMALL = {
    "hdemucs": {"channels": 4},
    "htdemucs": {"channels": 8, "depth": 4, "t_layers": 1, "bottom_channels": 0, "t_heads": 2},
    "demucs": {"channels": 8, "depth": 4},
    "bag": {"members": [{"architecture": "hdemucs", "args": {"channels": 4}}]},
}
BAD = {
    "hdemucs": [
        ({"depth": 3}, r"depth=3 with nfft=4096: .*cannot meet the time branch \(try depth >= 5\)"),
        ({"depth": 4}, r"depth=4 with nfft=4096: .*\(try depth >= 5\)"),
        ({"channels": 3}, r"channels=3 with dconv_comp=4: .*0 channels wide \(try channels >= 4\)"),
        ({"nfft": 1000}, r"nfft=1000: must be a power of two \(try 1024\)"),
        ({"nfft": 2048}, r"nfft=2048 .*never lines up .*\(try nfft in .*4096"),
        ({"channels": 0}, r"channels=0: must be a whole number >= 1"),
        ({"depth": 2.5}, r"depth=2.5: must be a whole number"),
        ({"no_such_option": 1}, r"bad hdemucs architecture arguments .*no_such_option"),
    ],
    "htdemucs": [
        ({"nfft": 2048, "depth": 5}, r"depth=5 with nfft=2048: .*does not line up .*\(try depth <= 4\)"),
        ({"t_heads": 3}, r"t_heads=3 with a Transformer width of 64: .*\(try t_heads = 1\)"),
        ({"channels": 3}, r"channels=3 with dconv_comp=4"),
        ({"nfft": 3000}, r"nfft=3000: must be a power of two"),
        ({"depth": 6}, r"bad htdemucs architecture arguments \(the Transformer needs both bottlenecks equally wide"),
    ],
    "demucs": [
        ({"kernel_size": 2}, r"kernel_size=2 with stride=4: .*\(try kernel_size >= 4\)"),
        ({"channels": 2}, r"channels=2 with dconv_comp=4"),
        ({"depth": 0}, r"depth=0: must be a whole number >= 1"),
    ],
    "bag": [
        ({"members": []}, r"at least one member"),
        ({"weights": [[1.0, 1.0, 1.0]]}, r"weights must be 1 rows of 4"),
        ({"members": [{"architecture": "hdemucs", "args": {"depth": 3}}]}, r"bag member 0: depth=3 with nfft=4096"),
    ],
}
GOOD = {
    "hdemucs": [{"depth": 5}, {"depth": 7}, {"nfft": 1024, "depth": 4}, {"channels": 4, "dconv_comp": 4}],
    "htdemucs": [{"depth": 5}, {"t_heads": 1}, {"t_layers": 0}],
    "demucs": [{"kernel_size": 4}, {"depth": 1}, {"resample": False}],
    "bag": [{"weights": [[1.0, 0.5, 2.0, 1.0]]}],
}


def test_every_registered_architecture_has_a_table():
    assert set(BAD) == set(architecture_names()) == set(GOOD)


@pytest.mark.parametrize("arch, change, message",
                         [(a, c, m) for a, rows in BAD.items() for c, m in rows])
def test_bad_settings_are_one_line(arch, change, message):
    with pytest.raises(ModelError, match=message) as err:
        check_model_config(arch, SOURCES, {**SMALL[arch], **change})
    text = str(err.value)
    assert "\n" not in text and "Traceback" not in text and len(text) < 400
    assert text.startswith("[model] ")


@pytest.mark.parametrize("arch, change", [(a, c) for a, rows in GOOD.items() for c in rows])
def test_boundary_values_still_work(arch, change):
    model = check_model_config(arch, SOURCES, {**SMALL[arch], **change})
    assert list(model.sources) == SOURCES


def test_sources_are_checked():
    with pytest.raises(ModelError, match="a source is named twice"):
        check_model_config("hdemucs", ["vocals", "vocals"], SMALL["hdemucs"])
    with pytest.raises(ModelError, match="at least one source"):
        check_model_config("hdemucs", [], SMALL["hdemucs"])


def test_dry_run_leaves_fixed_segment_models_as_they_were():
    model = check_model_config("htdemucs", SOURCES, {**SMALL["htdemucs"], "segment": 2.0})
    assert model.segment == 2.0 and model.init_kwargs["segment"] == 2.0


def test_card_whose_arguments_cannot_run_is_refused_naming_the_file(tmp_path):
    from stemgui.models.architectures import build_model
    from stemgui.models.card import load_model, save_model

    path = save_model(build_model("hdemucs", SOURCES, SMALL["hdemucs"]), tmp_path / "edited")
    card_file = path.with_suffix(".json")
    card = json.loads(card_file.read_text())
    card["args"]["depth"] = 4  # hand-edited
    card_file.write_text(json.dumps(card))
    with pytest.raises(ModelError, match=rf"{card_file.name}: depth=4 with nfft=4096") as err:
        load_model(path)
    assert "\n" not in str(err.value)
    card["architecture"] = "nonesuch"
    card_file.write_text(json.dumps(card))
    with pytest.raises(ModelError, match="unknown architecture 'nonesuch'"):
        load_model(path)


@pytest.mark.parametrize("flags, message", [
    (["--depth", "4"], r"\[model\] depth=4 with nfft=4096: .*\(try depth >= 5\)"),
    (["--depth", "3"], r"\[model\] depth=3 with nfft=4096"),
    (["--model-channels", "3"], r"\[model\] channels=3 with dconv_comp=4"),
])
def test_cli_train_refuses_before_loading_data(tmp_path, capsys, flags, message):
    """The model check runs before the dataset is looked at: an empty folder would fail later, and differently."""
    import re

    from stemgui.cli import main

    (tmp_path / "empty").mkdir()
    code = main(["train", "--dataset", str(tmp_path / "empty"), "--steps", "1", "--out", str(tmp_path / "m"), *flags])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert re.search(message, err) and err.startswith("stemgui: error: [model]")
