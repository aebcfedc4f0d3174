"""Function-preserving widening of a Hybrid Demucs: the wide model separates exactly as the narrow one did."""

import json

import pytest
import torch

from stemgui.cli import main
from stemgui.errors import ModelError
from stemgui.models.card import load_model, save_model
from stemgui.models.hdemucs import HDemucs
from stemgui.models.waveunet import WaveUNet
from stemgui.train.widen import widen_hdemucs

SOURCES = ["drums", "bass", "other", "vocals"]
# Small, but with every block the published layout has: group norms from the first layer, BiLSTM and local
# attention in the DConv branches of the deeper layers, the frequency embedding, the branch merge and split.
ARGS = dict(channels=4, depth=4, nfft=256, norm_starts=0, norm_groups=2, dconv_lstm=2, dconv_attn=2)


def _narrow(seed: int = 0) -> HDemucs:
    """A tiny model whose every tensor is far from its initial value: residual branches (LayerScale 1e-4 at
    init) and attention must matter to the output, or a wrong mapping of them would go unnoticed."""
    torch.manual_seed(seed)
    model = HDemucs(SOURCES, **ARGS)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.3 * torch.randn_like(param))
    return model


def _mix(seconds: float = 0.4, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return 0.3 * torch.randn(1, 2, int(44100 * seconds), generator=gen)


@pytest.mark.parametrize("factor", [2, 3])
def test_the_wide_model_computes_what_the_narrow_one_did(factor):
    narrow = _narrow()
    wide = widen_hdemucs(narrow, factor, seed=3)
    assert wide.init_kwargs["channels"] == factor * ARGS["channels"]
    assert sum(p.numel() for p in wide.parameters()) > 2 * sum(p.numel() for p in narrow.parameters())
    mix = _mix()
    with torch.no_grad():  # the inference fast path
        expected = narrow.eval()(mix)
        got = wide.eval()(mix)
    assert expected.abs().max() > 0.05
    torch.testing.assert_close(got, expected, rtol=0, atol=2e-5)
    narrow.train()
    wide.train()
    torch.testing.assert_close(wide(mix), narrow(mix), rtol=0, atol=2e-5)  # the training path


def test_the_copies_of_a_unit_learn_apart():
    """Equal shares would give both copies of a unit the same gradient forever; the random shares do not."""
    wide = widen_hdemucs(_narrow(), 2, seed=3).train()
    wide(_mix()).square().mean().backward()
    grad = wide.encoder[0].conv.weight.grad  # rows 2k and 2k+1 are the copies of narrow unit k
    assert torch.equal(wide.encoder[0].conv.weight[0], wide.encoder[0].conv.weight[1])
    assert not torch.allclose(grad[0], grad[1])


def test_the_shares_follow_the_seed():
    narrow = _narrow()
    first, again, other = (widen_hdemucs(narrow, 2, seed=s).encoder[1].conv.weight for s in (7, 7, 8))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_only_hdemucs_and_real_factors_are_accepted():
    with pytest.raises(ModelError, match="hdemucs, not waveunet"):
        widen_hdemucs(WaveUNet(SOURCES, levels=2, features=4), 2)
    with pytest.raises(ModelError, match="2 or more"):
        widen_hdemucs(_narrow(), 1)


def test_stemgui_models_widen_writes_a_model_that_separates_as_before(tmp_path, capsys):
    narrow_path = save_model(_narrow(), tmp_path / "narrow.safetensors",
                             {"name": "narrow", "metrics": {"test_usdr_mean": 1.5}})
    out = tmp_path / "wide.safetensors"
    assert main(["models", "widen", str(narrow_path), str(out), "--seed", "4"]) == 0
    assert "wrote" in capsys.readouterr().out
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["args"]["channels"] == 8
    assert card["metrics"] == {}  # the narrow model's scores do not describe what this one will become
    assert card["training"]["widened_from"]["metrics"] == {"test_usdr_mean": 1.5}
    assert card["training"]["widened_from"]["factor"] == 2
    narrow, _ = load_model(narrow_path)
    wide, _ = load_model(out)
    mix = _mix(0.3, seed=5)
    with torch.no_grad():
        torch.testing.assert_close(wide(mix), narrow(mix), rtol=0, atol=2e-5)


def test_widening_a_model_of_another_architecture_is_one_line_in_the_cli(tmp_path, capsys):
    path = save_model(WaveUNet(SOURCES, levels=2, features=4), tmp_path / "wun.safetensors")
    assert main(["models", "widen", str(path), str(tmp_path / "out.safetensors")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "widening is implemented for hdemucs" in err[0]
    assert not (tmp_path / "out.safetensors").exists()
