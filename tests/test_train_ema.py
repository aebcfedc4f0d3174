"""EMA of the generator: the closed form after n updates, the warm-up of short runs, integer buffers copied, an
independent frozen copy."""

import torch
from torch import nn

from stemgui.train.ema import EMA


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))


def test_after_n_updates_towards_fixed_weights_the_shadow_is_the_closed_form():
    """Shadow starts at θ0; n updates with the model at θ1 give θ1 + decay^n (θ0 − θ1)."""
    model = _model(0)
    ema = EMA(model, decay=0.9, warmup=False)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    target = model.state_dict()
    n = 7
    for _ in range(n):
        ema.update(model)
    for key in ("0.weight", "0.bias", "1.weight", "1.bias"):
        expected = target[key] + 0.9**n * (start[key] - target[key])
        torch.testing.assert_close(ema.state_dict()[key], expected, rtol=1e-6, atol=1e-6)


def test_a_moving_model_gives_the_weighted_sum_of_its_history():
    """shadow_n = d^n θ0 + Σ_k (1 − d) d^(n−k) θ_k for the model's weights θ_1..θ_n at each update."""
    decay = 0.75
    model = _model(1)
    ema = EMA(model, decay, warmup=False)
    history = [model.state_dict()["0.weight"].clone()]
    for step in range(5):
        with torch.no_grad():
            model[0].weight.mul_(1.1).add_(0.01 * step)
        history.append(model.state_dict()["0.weight"].clone())
        ema.update(model)
    n = len(history) - 1
    expected = decay**n * history[0] + sum((1 - decay) * decay ** (n - k) * history[k] for k in range(1, n + 1))
    torch.testing.assert_close(ema.state_dict()["0.weight"], expected, rtol=1e-5, atol=1e-6)


def test_the_warm_up_decay_follows_tensorflows_schedule_and_a_short_run_leaves_the_start_behind():
    """decay of update n = min(d, (1 + n) / (10 + n)): 0.1, 2/11, ... so 300 updates towards fixed weights θ1
    leave prod(decays) of θ0 in the shadow: about 0.04 % at d = 0.999, where the plain EMA keeps 74 %."""
    model = _model(5)
    ema, plain = EMA(model, decay=0.999), EMA(model, decay=0.999, warmup=False)
    start = model.state_dict()["0.weight"].clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    decays = []
    for _ in range(300):
        decays.append(ema.current_decay())
        ema.update(model)
        plain.update(model)
    assert decays[:3] == [0.1, 2 / 11, 3 / 12] and decays[-1] == min(0.999, 300 / 309) and ema.updates == 300
    kept = torch.prod(torch.tensor(decays, dtype=torch.float64)).item()
    expected = start + 1.0 - kept * 1.0  # θ1 + kept (θ0 − θ1), θ1 = θ0 + 1
    torch.testing.assert_close(ema.state_dict()["0.weight"], expected.float(), rtol=1e-5, atol=1e-5)
    assert kept < 1e-3 and 0.999**300 > 0.7
    torch.testing.assert_close(plain.state_dict()["0.weight"], start + 1.0 - 0.999**300, rtol=1e-5, atol=1e-5)


def test_integer_buffers_are_copied_not_averaged():
    model = _model(2)
    ema = EMA(model, decay=0.99)
    model.train()
    for _ in range(3):
        model(torch.randn(8, 3))  # BatchNorm counts batches (an int64 buffer)
    ema.update(model)
    assert ema.state_dict()["1.num_batches_tracked"].item() == 3
    assert ema.state_dict()["1.num_batches_tracked"].dtype == torch.int64


def test_the_shadow_is_a_frozen_independent_copy_and_round_trips():
    model = _model(3)
    ema = EMA(model, decay=0.5)
    assert not ema.shadow.training and not any(p.requires_grad for p in ema.shadow.parameters())
    with torch.no_grad():
        model[0].weight.zero_()
    assert ema.state_dict()["0.weight"].abs().sum() > 0  # changing the model does not touch the shadow
    saved = {k: v.clone() for k, v in ema.state_dict().items()}
    other = EMA(_model(4), decay=0.5)
    other.load_state_dict(saved)
    assert all(torch.equal(other.state_dict()[k], v) for k, v in saved.items())
