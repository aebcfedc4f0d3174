"""benchmarks/compute_limit.py counts FLOPs right: by hand on one convolution and on CPU fused attention."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from helpers import load_script


def _script():
    return load_script("benchmarks/compute_limit.py")


def test_conv_count_matches_the_hand_count() -> None:
    check = _script().check_conv_by_hand()
    out_len = (44100 + 2 * 2 - 8) // 4 + 1
    assert check["counted"] == check["by_hand"] == 2 * 96 * 48 * 8 * out_len


def test_cpu_attention_and_linear_are_counted_and_recorded() -> None:
    script = _script()
    calls: dict[str, dict] = {}
    q = torch.randn(1, 2, 30, 8)
    k = torch.randn(1, 2, 50, 8)
    linear = torch.nn.Linear(16, 4)
    counter = script._recording_counter(calls)
    with torch.inference_mode(), counter:
        F.scaled_dot_product_attention(q, k, k)
        linear(torch.randn(10, 16))
    attention = 2 * 2 * (2 * 30 * 50 * 8)  # Q·Kᵀ and P·V, 2 FLOPs per multiply-add, 2 heads
    assert counter.get_total_flops() == attention + 2 * 10 * 16 * 4
    kinds = sorted((c["kind"], c["flops_each"]) for c in calls.values())
    assert kinds == [("attention", attention), ("matmul", 2 * 10 * 16 * 4)]
    assert all(script._replay_rate(c, min_seconds=0.0) > 0 for c in calls.values())


def test_the_peak_floor_is_the_counted_work_at_peak_on_two_cores() -> None:
    row = {"gflop_per_audio_second": 57.0}
    _script().add_peak_floor(row, peak_gflops_1core=95.0, audio_seconds=60.0)
    assert row["peak_floor_seconds_60s_audio_2cores"] == 18.0  # 57 * 60 GFLOP / (2 x 95 GFLOP/s)


def test_time_by_kind_sorts_a_forward_into_the_kinds() -> None:
    net = torch.nn.Sequential(torch.nn.Conv1d(2, 8, 5), torch.nn.GELU(), torch.nn.Conv1d(8, 2, 1))
    kinds = _script().time_by_kind(net, torch.randn(1, 2, 4000))
    assert "conv" in kinds and "elementwise/norm" in kinds
    assert abs(sum(k["share"] for k in kinds.values()) - 1.0) < 0.01
    assert all(k["ms"] >= 0 for k in kinds.values())
