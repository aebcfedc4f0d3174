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
    "drnn": {"hidden": 8, "nfft": 64},
    "unet": {"channels": 2, "nfft": 128, "hop": 96},
    "nmf": {"components": 2, "nfft": 64, "hop": 32, "iterations": 2},
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
    "drnn": [
        ({"recurrent": 4}, r"recurrent=4 with layers=3: .*\(try recurrent in 0..3, or stacked=true"),
        ({"context": -1}, r"context=-1: must be a whole number >= 0"),
        ({"nfft": 63}, r"nfft=63: must be even \(try 64\)"),
        ({"hop": 64}, r"hop=64 with nfft=64: .*\(try hop <= 48\)"),
        ({"hidden": 0}, r"hidden=0: must be a whole number >= 1"),
        ({"no_such_option": 1}, r"bad drnn architecture arguments .*no_such_option"),
    ],
    "unet": [
        ({"nfft": 64, "hop": 48}, r"nfft=64: .*\(try nfft >= 128\)"),
        ({"nfft": 1000}, r"nfft=1000: must be a power of two \(try 1024\)"),
        ({"hop": 128}, r"hop=128 with nfft=128: .*\(try hop <= 96\)"),
        ({"dropout": 1.0}, r"dropout=1: must be in \[0, 1\)"),
    ],
    "nmf": [
        ({"components": 0}, r"components=0: must be a whole number >= 1"),
        ({"power": 0}, r"power=0: the Wiener exponent must be > 0 \(try 2\)"),
        ({"hop": 100}, r"hop=100 with nfft=64: .*\(try hop <= 48\)"),
    ],
}
GOOD = {
    "hdemucs": [{"depth": 5}, {"depth": 7}, {"nfft": 1024, "depth": 4}, {"channels": 4, "dconv_comp": 4}],
    "htdemucs": [{"depth": 5}, {"t_heads": 1}, {"t_layers": 0}],
    "demucs": [{"kernel_size": 4}, {"depth": 1}, {"resample": False}],
    "bag": [{"weights": [[1.0, 0.5, 2.0, 1.0]]}],
    "drnn": [{"recurrent": 0}, {"recurrent": 3}, {"stacked": True, "recurrent": 9}, {"context": 0}, {"hop": 48}],
    "unet": [{"nfft": 128, "hop": 112}, {"dropout": 0.0}],
    "nmf": [{"beta": 0.0}, {"beta": 2.0}, {"components": 1}],
}

# The waveform models of issue 17 (kept in their own block so parallel edits of the tables above do not collide).
SMALL.update({
    "waveunet": {"levels": 3, "features": 4},
    "demucs1": {"channels": 8, "depth": 4},
    "convtasnet": {"N": 16, "B": 8, "H": 16, "X": 2, "R": 1},
})
BAD.update({
    "waveunet": [
        ({"kernel_down": 14}, r"kernel_down=14: must be odd .*\(try kernel_down=15\)"),
        ({"kernel_up": 4}, r"kernel_up=4: must be odd"),
        ({"output": "diff"}, r"output='diff': must be 'difference'"),
        ({"levels": 0}, r"levels=0: must be a whole number >= 1"),
        ({"context": False, "levels": 14, "segment": 0.1},
         r"levels=14 with segment=0.1 s: .*16384 samples .*\(try levels <= 12 or a longer segment\)"),
        ({"levels": 20}, r"levels=20 with context: .*\(try levels <= 17\)"),
        ({"upsampling": "learned"}, r"upsampling='learned': only the paper's linear interpolation"),
        ({"no_such_option": 1}, r"bad waveunet architecture arguments .*no_such_option"),
    ],
    "demucs1": [
        ({"kernel_size": 2}, r"kernel_size=2 with stride=4: .*\(try kernel_size >= 4\)"),
        ({"context": -1}, r"context=-1: must be a whole number >= 0"),
        ({"depth": 0}, r"depth=0: must be a whole number >= 1"),
        ({"channels": 2, "dconv_mode": 1}, r"channels=2 with dconv_comp=4"),
    ],
    "convtasnet": [
        ({"L": 15}, r"L=15: the encoder's stride is L/2 .*\(try L=16\)"),
        ({"P": 2}, r"P=2: .*odd kernel .*\(try P=3\)"),
        ({"norm_type": "LN"}, r"norm_type='LN': must be gLN, cLN, BN or id"),
        ({"X": 0}, r"X=0: must be a whole number >= 1"),
        ({"mask_nonlinear": "sigmoid"}, r"mask_nonlinear='sigmoid': must be relu or softmax"),
    ],
})
GOOD.update({
    "waveunet": [{"context": False}, {"output": "direct"}, {"kernel_down": 1, "kernel_up": 1},
                 {"context": False, "segment": 0.01}],
    "demucs1": [{"valid_context": False}, {"lstm_layers": 0}, {"context": 0}, {"depth": 1}, {"channels": 2}],
    "convtasnet": [{"L": 2}, {"skip": True}, {"mask_nonlinear": "softmax"}, {"norm_type": "cLN"}],
})


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


def test_a_configuration_that_passed_is_not_dry_run_again(monkeypatch):
    """A bag of four HTDemucs paid four forwards on every load; the verdict depends only on the arguments."""
    from stemgui.models import check

    args = {**SMALL["hdemucs"], "depth": 5}
    check_model_config("hdemucs", SOURCES, args)
    calls = []
    monkeypatch.setattr(check, "dry_run", lambda model, seconds=0.5: calls.append(seconds))
    check_model_config("hdemucs", SOURCES, args)
    assert calls == []
    check_model_config("hdemucs", SOURCES, {**args, "channels": 5})  # another configuration is still run
    assert calls == [0.5]


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
