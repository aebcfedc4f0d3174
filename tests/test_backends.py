"""Engine backends (stemgui/backends.py): each available one gives eager's results, unavailable ones fall back."""

from __future__ import annotations

import json
import logging
import sys

import numpy as np
import pytest
import torch

from stemgui import backends
from stemgui.errors import StemGUIError
from stemgui.models.hdemucs import HDemucs
from stemgui.models.htdemucs import HTDemucs
from stemgui.separate import SeparationSettings, Separator

SOURCES = ["drums", "bass", "other", "vocals"]
FP32_TOL = 1e-4
REDUCED_TOL = 1e-3


def _stir(model: torch.nn.Module) -> torch.nn.Module:
    """LayerScales (initialised at 1e-4) raised to O(1), so that every branch shows in the output."""
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(".scale"):
                param.copy_(0.2 + 0.8 * torch.rand(param.shape, generator=gen))
    return model.eval()


def tiny_hdemucs() -> HDemucs:
    torch.manual_seed(0)
    return _stir(HDemucs(SOURCES, channels=4, segment=2.0, dconv_attn=4, dconv_lstm=4))


def tiny_htdemucs() -> HTDemucs:
    torch.manual_seed(0)
    return _stir(HTDemucs(SOURCES, channels=8, depth=4, t_layers=1, segment=0.5))


def _song(seconds: float = 1.3) -> np.ndarray:
    rng = np.random.default_rng(3)
    return (0.3 * rng.standard_normal((2, int(44100 * seconds)))).astype(np.float32)


def _separate(model, backend: str, precision: str = "auto", workers: int = 1) -> tuple[np.ndarray, Separator]:
    sep = Separator(model, SeparationSettings(device="cpu", segment=0.5, overlap=0.25, batch_size=1), workers=workers, backend=backend,
                    precision=precision)
    return sep.separate(_song()), sep


@pytest.mark.parametrize("make", [tiny_hdemucs, tiny_htdemucs], ids=["hdemucs", "htdemucs"])
def test_onnx_matches_eager(make) -> None:
    pytest.importorskip("onnxruntime"), pytest.importorskip("onnx")
    model = make()
    eager, _ = _separate(model, "eager")
    onnx, sep = _separate(model, "onnx", workers=2)
    assert sep.engine()["backend"] == "onnx" and sep.engine()["notice"] == ""
    assert sep.runner(0).call.sessions  # the repeated full-segment shape really ran in ONNX Runtime
    assert np.abs(onnx - eager).max() < FP32_TOL
    assert np.abs(eager).max() > 0.05  # the comparison is not between two near-zero outputs


@pytest.mark.slow
def test_compile_matches_eager() -> None:
    model = tiny_htdemucs()
    eager, _ = _separate(model, "eager")
    compiled, sep = _separate(model, "compile")
    assert sep.engine()["backend"] == "compile"
    assert np.abs(compiled - eager).max() < FP32_TOL


def test_int8_stays_within_the_reduced_precision_tolerance() -> None:
    model = tiny_hdemucs()
    eager, _ = _separate(model, "eager", "fp32")
    int8, sep = _separate(model, "eager", "int8")
    assert sep.engine()["precision"] == "int8"
    diff = np.abs(int8 - eager).max()
    assert 0 < diff < REDUCED_TOL  # quantised weights: not identical, but within 1e-3


def test_missing_onnxruntime_falls_back_to_eager_with_one_notice(monkeypatch, caplog) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now raises ImportError
    model = tiny_hdemucs()
    with caplog.at_level(logging.WARNING, logger="stemgui.backends"):
        out, sep = _separate(model, "onnx", workers=2)
    engine = sep.engine()
    assert engine["backend"] == "eager" and "onnxruntime is not installed" in engine["notice"]
    notices = [r for r in caplog.records if r.name == "stemgui.backends"]
    assert len(notices) == 1 and "\n" not in notices[0].getMessage()
    np.testing.assert_array_equal(out, _separate(model, "eager", workers=2)[0])


def test_failed_export_falls_back_to_eager(monkeypatch, caplog) -> None:
    pytest.importorskip("onnxruntime"), pytest.importorskip("onnx")

    def broken(*args, **kwargs):
        raise RuntimeError("Exporting the operator 'aten::weird' to ONNX opset version 17 is not supported")

    monkeypatch.setattr(torch.onnx, "export", broken)
    model = tiny_htdemucs()
    with caplog.at_level(logging.WARNING, logger="stemgui.backends"):
        out, sep = _separate(model, "onnx")  # segments of 0.5 s: the second one exports
    assert sep.engine()["backend"] == "eager" and "onnx failed" in sep.engine()["notice"]
    assert len(caplog.records) == 1
    np.testing.assert_array_equal(out, _separate(model, "eager")[0])


def test_no_compiler_falls_back_to_eager(monkeypatch) -> None:
    monkeypatch.setattr(backends, "has_compiler", lambda: False)
    runner = backends.prepare_runner(tiny_hdemucs(), "compile", "fp32", device=torch.device("cpu"))
    assert runner.backend == "eager" and "C++ compiler" in runner.notice


def test_auto_choice_per_device_and_model() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    # measured: no option wins clearly on this CPU (see backends.auto_choice), so auto is eager fp32
    assert backends.auto_choice(tiny_hdemucs(), cpu) == ("eager", "fp32")
    assert backends.auto_choice(tiny_htdemucs(), cpu) == ("eager", "fp32")
    assert backends.auto_choice(tiny_hdemucs(), cuda) == ("eager", "fp32")  # AMP / compile only when asked
    runner = backends.prepare_runner(tiny_hdemucs(), "auto", "auto", device=cpu)
    assert (runner.backend, runner.precision, runner.notice) == ("eager", "fp32", "")
    assert backends.auto_summary("hdemucs", "cpu") == "eager torch, fp32 on the CPU"

    class Plain(torch.nn.Module):  # no swappable network: always eager, and no notice for auto
        def forward(self, mix):
            return mix[:, None].repeat(1, 4, 1, 1)

    runner = backends.prepare_runner(Plain(), "auto", "auto", device=cpu)
    assert (runner.backend, runner.precision, runner.notice) == ("eager", "fp32", "")


def test_cuda_options_are_kept_when_asked() -> None:
    """No GPU here: the choices are checked without running (the runner touches the device only when called)."""
    cuda = torch.device("cuda")
    amp = backends.prepare_runner(tiny_hdemucs(), "eager", "fp16", device=cuda)
    assert (amp.backend, amp.precision, amp.notice) == ("eager", "fp16", "")
    compiled = backends.prepare_runner(tiny_hdemucs(), "compile", "bf16", device=cuda)
    assert (compiled.backend, compiled.precision) == ("compile", "bf16")
    onnx = backends.prepare_runner(tiny_hdemucs(), "onnx", "fp32", device=cuda)
    assert onnx.backend == "eager" and "CPU only" in onnx.notice
    int8 = backends.prepare_runner(tiny_hdemucs(), "eager", "int8", device=cuda)
    assert int8.precision == "fp32" and "int8" in int8.notice


def test_amp_runs_under_autocast(monkeypatch) -> None:
    """fp16 on CUDA is autocast around the model call (simulated on the CPU's autocast with bf16)."""
    monkeypatch.setattr(backends, "cpu_has_bf16", lambda: True)
    model = tiny_hdemucs()
    seen = []
    original = model.network

    def spy(x, xt):
        seen.append(torch.is_autocast_enabled("cpu"))
        return original(x, xt)

    monkeypatch.setattr(model, "network", spy)
    runner = backends.prepare_runner(model, "eager", "bf16", device=torch.device("cpu"))
    with torch.inference_mode():
        out = runner(torch.from_numpy(_song(1.0))[None], 1)
    assert seen == [True] and out.shape == (1, 4, 2, 44100)


def test_reduced_precision_without_cpu_support_is_fp32(monkeypatch) -> None:
    monkeypatch.setattr(backends, "cpu_has_bf16", lambda: False)
    runner = backends.prepare_runner(tiny_hdemucs(), "eager", "bf16", device=torch.device("cpu"))
    assert runner.precision == "fp32" and "bf16" in runner.notice


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(StemGUIError, match="unknown backend"):
        Separator(tiny_hdemucs(), SeparationSettings(device="cpu"), backend="tensorrt")


def test_sidecar_records_the_backend(tmp_path) -> None:
    import soundfile as sf

    from stemgui.cli import main
    from stemgui.models.card import save_model

    model_path = save_model(tiny_hdemucs(), tmp_path / "tiny.safetensors", {"name": "tiny"})
    song = tmp_path / "song.wav"
    sf.write(song, _song().T, 44100, subtype="FLOAT")
    assert main(["separate", str(song), "-o", str(tmp_path / "out"), "--model", str(model_path),
                 "--device", "cpu", "--backend", "eager"]) == 0
    sidecar = json.loads((tmp_path / "out" / "song" / "separation.json").read_text())
    assert sidecar["engine"]["backend"] == "eager" and sidecar["engine"]["precision"] == "fp32"
    assert sidecar["engine"]["requested"] == {"backend": "eager", "precision": "auto"}


def test_onnx_export_is_cached_on_disk(tmp_path, monkeypatch) -> None:
    """A later Separator of the same weights loads the cached export instead of exporting again."""
    pytest.importorskip("onnxruntime"), pytest.importorskip("onnx")
    model = tiny_htdemucs()
    first, _ = _separate(model, "onnx")
    exports = []
    real_export = torch.onnx.export
    monkeypatch.setattr(torch.onnx, "export", lambda *a, **k: exports.append(1) or real_export(*a, **k))
    again, sep = _separate(model, "onnx")
    assert exports == [] and sep.runner(0).call.sessions
    np.testing.assert_allclose(again, first, atol=1e-6)


def test_card_panel_shows_the_engine(qtbot, tmp_path) -> None:
    from PySide6.QtCore import QSettings

    from stemgui.gui.dialogs import Dialogs
    from stemgui.gui.settings import AppSettings
    from stemgui.gui.settings_panel import SeparationSettingsPanel

    settings = AppSettings(QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat))
    settings.device = "cpu"
    panel = SeparationSettingsPanel(settings, Dialogs())
    qtbot.addWidget(panel)
    assert "Engine: eager torch, fp32 on the CPU" in panel.card_label.text()
