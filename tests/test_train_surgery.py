"""Fine-tuning surgery: source mapping by name, any base architecture via the registry, bag members as base."""

import json

import pytest
import torch

from stemgui.errors import ModelError
from stemgui.models.card import CARD_FORMAT, card_path, read_card, save_model
from stemgui.models.hdemucs import HDemucs
from stemgui.train.surgery import (
    finetune_generator,
    freeze_encoder_layers,
    load_base_model,
    map_sources,
    source_dims,
    split_member,
)

from helpers import make_musdb, tiny_config

SOURCES = ["drums", "bass", "other", "vocals"]
ARGS = dict(channels=4, depth=3, nfft=64)


def _tiny(seed: int, sources=SOURCES, **args) -> HDemucs:
    torch.manual_seed(seed)
    return HDemucs(list(sources), **(args or ARGS))


def write_bag(path, members: list[HDemucs]) -> None:
    """A bag card written by hand, as the bag class stores one: members' tensors under `models.K.`."""
    from safetensors.torch import save_file

    state = {f"models.{k}.{name}": tensor.contiguous() for k, model in enumerate(members)
             for name, tensor in model.state_dict().items()}
    save_file(state, str(path))
    card = {
        "format": CARD_FORMAT, "name": "tinybag", "architecture": "bag", "sources": SOURCES, "samplerate": 44100,
        "audio_channels": 2,
        "args": {"members": [{"architecture": "hdemucs", "sources": list(m.sources),
                              "args": {k: v for k, v in m.init_kwargs.items() if k != "sources"}} for m in members],
                 "weights": [[1.0] * len(SOURCES) for _ in members], "segment": None},
    }
    card_path(path).write_text(json.dumps(card), encoding="utf-8")


@pytest.fixture(scope="module")
def bag_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("bag") / "tinybag.safetensors"
    write_bag(path, [_tiny(1), _tiny(2)])
    return path


def _outputs(model, mix):
    with torch.no_grad():
        return model.eval()(mix)


def test_split_member_reads_the_member_index_only_from_a_trailing_number(tmp_path):
    assert split_member("htdemucs_ft:3") == ("htdemucs_ft", 3)
    assert split_member("/models/bag.safetensors:0") == ("/models/bag.safetensors", 0)
    assert split_member("default") == ("default", None)
    assert split_member("C:/models/x.safetensors") == ("C:/models/x.safetensors", None)
    odd = tmp_path / "odd:1"
    odd.write_text("")
    assert split_member(str(odd)) == (str(odd), None)  # a file really named so wins


def test_source_dims_finds_the_output_layers_and_leaves_the_rng_alone():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    dims = source_dims("hdemucs", ["vocals", "drums"], ARGS)
    assert torch.equal(torch.get_rng_state(), before)
    assert dims and all(k.startswith(("decoder.", "tdecoder.")) for k in dims)
    assert set(source_dims("hdemucs", SOURCES, ARGS, model=_tiny(0))) == set(dims)


@pytest.mark.parametrize("target", [["vocals", "drums"], ["vocals", "other", "bass", "drums"]])
def test_map_sources_copies_each_shared_source_by_name(target):
    """A subset and a same-size permutation: each output equals the base model's output for that source."""
    base = _tiny(0)
    mix = torch.randn(1, 2, 8000, generator=torch.Generator().manual_seed(0))
    full = _outputs(base, mix)
    small = HDemucs(target, **ARGS)
    dims = source_dims("hdemucs", target, ARGS, model=small)
    assert map_sources(small, base.state_dict(), SOURCES, target, dims) == target
    part = _outputs(small, mix)
    for i, name in enumerate(target):
        torch.testing.assert_close(part[:, i], full[:, SOURCES.index(name)], atol=1e-5, rtol=1e-4)


# Small configurations of every trainable architecture (the surgery must not know any of them)
SMALL = {
    "hdemucs": {"channels": 4, "depth": 3, "nfft": 64, "segment": 1.0},
    "htdemucs": {"channels": 8, "depth": 4, "t_layers": 1, "bottom_channels": 0, "t_heads": 2, "segment": 1.0},
    "demucs": {"channels": 8, "depth": 4, "segment": 1.0},
}


@pytest.mark.parametrize("architecture", sorted(SMALL))
def test_any_registered_architecture_is_a_base_model(architecture, tmp_path):
    """Saved, then fine-tuned on a subset in another order: each output equals the base model's for that source."""
    from stemgui.models.architectures import build_model

    torch.manual_seed(0)
    base = build_model(architecture, SOURCES, SMALL[architecture]).eval()
    save_model(base, tmp_path / "base.safetensors", {"name": "base"})
    segment = float(base.segment)
    model, note = finetune_generator(str(tmp_path / "base.safetensors"), ["vocals", "drums"], segment=segment,
                                     samplerate=44100)
    assert model.architecture == architecture and note["base_architecture"] == architecture
    mix = torch.randn(1, 2, int(segment * 44100) // 2, generator=torch.Generator().manual_seed(2))
    full, part = _outputs(base, mix), _outputs(model, mix)
    torch.testing.assert_close(part[:, 0], full[:, 3], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(part[:, 1], full[:, 0], atol=1e-5, rtol=1e-4)


def test_one_module_per_source_is_mapped_by_name_and_a_16khz_base_is_not_refused(tmp_path):
    """DRNN keeps one output layer per source (`heads.K.`), not slices of one tensor; a 16 kHz base model is
    fine-tuned from 44.1 kHz data (the trainer converts the data to the model's rate)."""
    from stemgui.models.architectures import build_model
    from stemgui.train.surgery import source_layout

    torch.manual_seed(0)
    base = build_model("drnn", ["vocals", "accompaniment"], {"hidden": 8, "nfft": 64})
    save_model(base, tmp_path / "base.safetensors", {"name": "base"})
    dims, templates = source_layout("drnn", SOURCES, {"hidden": 8, "nfft": 64})
    assert templates == ["heads.{}.bias", "heads.{}.weight"] and dims == {}
    model, note = finetune_generator(str(tmp_path / "base.safetensors"), SOURCES, segment=1.0, samplerate=44100)
    assert note["mapped_sources"] == ["vocals"] and model.samplerate == 16000
    torch.testing.assert_close(model.heads[3].weight, base.heads[0].weight)  # vocals: copied from the base
    assert not torch.equal(model.heads[0].weight, base.heads[1].weight)  # drums: fresh, not accompaniment's
    for name, tensor in base.state_dict().items():  # every shared layer copied unchanged
        if not name.startswith("heads."):
            torch.testing.assert_close(model.state_dict()[name], tensor)


def test_map_sources_refuses_disjoint_sources_and_other_architectures():
    base = _tiny(0)
    other = HDemucs(["piano"], **ARGS)
    with pytest.raises(ModelError, match="share none"):
        map_sources(other, base.state_dict(), SOURCES, ["piano"], source_dims("hdemucs", ["piano"], ARGS))
    deeper = HDemucs(SOURCES, channels=4, depth=4, nfft=64)
    with pytest.raises(ModelError, match="different architecture"):
        map_sources(deeper, base.state_dict(), SOURCES, SOURCES, {})
    shallower = HDemucs(SOURCES, channels=4, depth=2, nfft=64)
    with pytest.raises(ModelError, match="tensors this architecture lacks"):
        map_sources(shallower, base.state_dict(), SOURCES, SOURCES, {})


def test_freeze_encoder_layers_freezes_both_branches():
    model = _tiny(0)
    assert freeze_encoder_layers(model, 1) == 2  # encoder[0] and tencoder[0]
    assert not any(p.requires_grad for p in model.encoder[0].parameters())
    assert not any(p.requires_grad for p in model.tencoder[0].parameters())
    assert all(p.requires_grad for p in model.encoder[1].parameters())
    assert freeze_encoder_layers(torch.nn.Linear(2, 2), 3) == 0  # no encoder: nothing, with a warning


def test_a_plain_model_is_its_own_base(tmp_path):
    base = _tiny(0)
    save_model(base, tmp_path / "base.safetensors", {"name": "base"})
    loaded = load_base_model(str(tmp_path / "base.safetensors"))
    assert (loaded.architecture, loaded.sources, loaded.member, loaded.name) == ("hdemucs", SOURCES, None, "base")
    assert "sources" not in loaded.args and loaded.state.keys() == base.state_dict().keys()
    with pytest.raises(ModelError, match="not a bag"):
        load_base_model(f"{tmp_path / 'base.safetensors'}:0")
    # data at another rate are converted to the model's on the fly (as when training from scratch)
    model, _ = finetune_generator(str(tmp_path / "base.safetensors"), SOURCES, segment=1.0, samplerate=48000)
    assert model.samplerate == 44100


@pytest.mark.parametrize("member", [0, 1])
def test_a_bag_member_is_a_base_model(bag_path, member):
    """`bag.safetensors:K` fine-tunes member K: its architecture, its own tensors, its sources mapped by name."""
    mix = torch.randn(1, 2, 8000, generator=torch.Generator().manual_seed(1))
    reference = _outputs(_tiny(member + 1), mix)
    model, note = finetune_generator(f"{bag_path}:{member}", ["vocals", "bass"], segment=0.5, samplerate=44100,
                                     freeze_encoder=1)
    assert model.architecture == "hdemucs" and model.segment == 0.5
    assert note == {"base_model": f"{bag_path}:{member}", "base_model_name": "tinybag",
                    "mapped_sources": ["vocals", "bass"], "base_architecture": "hdemucs", "base_member": member}
    out = _outputs(model, mix)
    torch.testing.assert_close(out[:, 0], reference[:, 3], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out[:, 1], reference[:, 1], atol=1e-5, rtol=1e-4)


def test_a_registered_bag_is_found_by_name(bag_path):
    from stemgui.models.registry import register_user_model

    register_user_model(bag_path, "tinybag")
    base = load_base_model("tinybag:1")
    assert base.member == 1 and base.sources == SOURCES
    torch.testing.assert_close(base.state["encoder.0.conv.weight"], _tiny(2).state_dict()["encoder.0.conv.weight"])


def test_a_bag_member_that_does_not_exist_is_one_clear_error(bag_path):
    with pytest.raises(ModelError, match=r"the bag 'tinybag' has members 0 to 1, not 5$"):
        load_base_model(f"{bag_path}:5")
    with pytest.raises(ModelError, match=r"is a bag of 2 models; fine-tune one member with .*:K \(K from 0 to 1\)"):
        load_base_model(str(bag_path))


def test_trainer_fine_tunes_a_bag_member(bag_path, tmp_path):
    from stemgui.train.trainer import Trainer

    dataset = make_musdb(tmp_path / "musdb", tracks=3, seconds=1.0)
    cfg = tiny_config(dataset, tmp_path / "ft.safetensors", preset="l1", steps=1, batch=1)
    cfg.data.sources = ["vocals", "drums"]
    cfg.finetune.base_model = f"{bag_path}:1"
    Trainer(cfg).run()
    card = read_card(tmp_path / "ft.safetensors")
    assert card["architecture"] == "hdemucs" and card["sources"] == ["vocals", "drums"]
    assert card["training"]["finetune"]["base_member"] == 1
