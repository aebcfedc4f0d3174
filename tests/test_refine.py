"""Mixture refinement (stemgui.refine): equal to a whole-song STFT reference, streamed or not; masks that share
the whole song; a Wiener rule that pushes a weak trace down; the engine, CLI and evaluate wiring."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from test_separate_engine import ScaleModel  # stems = fixed fractions (0.1, 0.2, 0.3, 0.4) of the song

from stemgui.errors import StemGUIError
from stemgui.refine import (
    REFINE_MODES,
    RULES_VERSION,
    TREBLE_HZ,
    StreamingRefiner,
    masks,
    refine,
    resolve_mode,
    treble_weight,
)
from stemgui.separate import SeparationSettings, Separator

SOURCES = ["drums", "bass", "other", "vocals"]
SR = 44100


def _stems(length: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gains = np.array([1.0, 0.5, 0.2, 0.1], np.float32)[:, None, None]
    stems = rng.standard_normal((4, 2, length)).astype(np.float32) * gains
    mix = stems.sum(axis=0) + 0.05 * rng.standard_normal((2, length)).astype(np.float32)  # stems != song
    return stems, mix


def _reference(stems: np.ndarray, mix: np.ndarray, mode: str, nfft: int) -> np.ndarray:
    """The definition, with torch.stft / torch.istft on whole signals."""
    hop, window = nfft // 4, torch.hann_window(nfft)
    out = np.zeros_like(stems)

    def stft(x):
        return torch.stft(torch.from_numpy(np.ascontiguousarray(x)), nfft, hop, window=window, center=True,
                          pad_mode="constant", return_complex=True)

    for c in range(stems.shape[1]):
        mix_spec = stft(mix[c])
        mask = masks(torch.stack([stft(s) for s in stems[:, c]]), mode, SOURCES.index("vocals"), mix_spec,
                     treble_weight(nfft, SR)[:, None])
        for j in range(len(stems)):
            out[j, c] = torch.istft(mix_spec * mask[j], nfft, hop, window=window, center=True,
                                    length=stems.shape[-1]).numpy()
    return out


@pytest.mark.parametrize("mode", ["ratio", "wiener", "vocals", "vocals-strict"])
@pytest.mark.parametrize("length", [1, 100, 511, 20_001])
def test_whole_song_refinement_is_the_stft_definition(mode, length):
    stems, mix = _stems(length, length)
    out = refine(stems, mix, mode, SOURCES, nfft=1024)
    np.testing.assert_allclose(out, _reference(stems, mix, mode, 1024), atol=2e-6)
    np.testing.assert_allclose(out.sum(axis=0), mix, atol=2e-6)  # the masks share out all of the song


@pytest.mark.parametrize("mode", ["ratio", "wiener", "vocals", "vocals-strict"])
def test_streamed_regions_equal_the_whole_song(mode):
    length = 30_011
    stems, mix = _stems(length, 3)
    whole = refine(stems, mix, mode, SOURCES, nfft=1024)
    refiner = StreamingRefiner(mode, SOURCES, 2, length, nfft=1024)
    cuts = [0, 1, 2, 700, 5_000, 5_001, 21_000, 29_990, length]
    pieces = []
    for a, b in zip(cuts[:-1], cuts[1:]):
        got = refiner.push(stems[..., a:b], mix[..., a:b])
        assert all(end <= b for _, end, _ in got)  # nothing is handed out before its input arrived
        pieces += got
    pieces += refiner.finish()
    starts = [p[0] for p in pieces]
    ends = [p[1] for p in pieces]
    assert starts[0] == 0 and ends[-1] == length and starts[1:] == ends[:-1]  # contiguous, in order
    assert max(b - e for (_, e, _), b in zip(pieces, cuts[1:])) <= 1024  # lags at most one transform
    np.testing.assert_allclose(np.concatenate([p[2] for p in pieces], axis=-1), whole, atol=1e-6)


def test_streaming_checks_its_input():
    refiner = StreamingRefiner("wiener", SOURCES, 2, 100, nfft=64)
    with pytest.raises(StemGUIError, match="do not match"):
        refiner.push(np.zeros((4, 2, 10)), np.zeros((2, 11)))
    with pytest.raises(StemGUIError, match="of a 100-sample song"):
        refiner.push(np.zeros((4, 2, 101)), np.zeros((2, 101)))
    refiner.push(np.zeros((4, 2, 50)), np.zeros((2, 50)))
    with pytest.raises(StemGUIError, match="after 50 of 100"):
        refiner.finish()


def test_silent_stems_share_the_song_equally():
    """Where every estimate is silent the song is split evenly: nothing of it is lost."""
    mix = np.random.default_rng(0).standard_normal((2, 4096)).astype(np.float32)
    for mode in ("ratio", "wiener", "vocals", "vocals-strict"):
        out = refine(np.zeros((4, 2, 4096), np.float32), mix, mode, SOURCES, nfft=512)
        np.testing.assert_allclose(out.sum(axis=0), mix, atol=1e-5)
        if not mode.startswith("vocals"):
            np.testing.assert_allclose(out[0], mix / 4, atol=1e-5)


def _band_db(x: np.ndarray, freq: float) -> float:
    spec = np.abs(np.fft.rfft(x.mean(axis=0)))
    k = int(round(freq * x.shape[-1] / SR))
    return 20 * np.log10(spec[k - 2:k + 3].max() + 1e-12)


def test_the_wiener_rules_push_a_weak_trace_down_and_ratio_does_not():
    """Vocals estimate = voice (440 Hz) + a trace of the drums (5 kHz) 20 dB under them; drums estimate = drums.
    Ratio masks keep the trace near -21 dB; the Wiener rules give it |trace|^2 / |drums|^2: about -40 dB."""
    t = np.arange(SR) / SR
    voice = np.tile(0.5 * np.sin(2 * np.pi * 440 * t), (2, 1)).astype(np.float32)
    drums = np.tile(0.5 * np.sin(2 * np.pi * 5000 * t), (2, 1)).astype(np.float32)
    zero = np.zeros_like(voice)
    stems = np.stack([drums, zero, zero, voice + 0.1 * drums])
    mix = voice + drums
    raw = _band_db(stems[3], 5000) - _band_db(drums, 5000)
    assert -21 < raw < -19
    trace = {mode: _band_db(refine(stems, mix, mode, SOURCES)[3], 5000) - _band_db(drums, 5000)
             for mode in ("ratio", "wiener", "vocals", "vocals-strict")}
    assert -23 < trace["ratio"] < -19
    assert trace["wiener"] < -38 and trace["vocals"] < -38 and trace["vocals-strict"] < -38
    for mode in ("ratio", "wiener", "vocals", "vocals-strict"):  # the voice itself stays
        assert abs(_band_db(refine(stems, mix, mode, SOURCES)[3], 440) - _band_db(voice, 440)) < 0.5


def test_vocals_rule_keeps_the_instruments_balance():
    """Accompaniment bins are shared among the instruments by magnitude: 2:1 estimates give 2:1 stems."""
    rng = np.random.default_rng(5)
    noise = rng.standard_normal((2, 8192)).astype(np.float32)
    stems = np.stack([2 * noise, noise, np.zeros_like(noise), np.zeros_like(noise)])
    out = refine(stems, 3 * noise, "vocals", SOURCES, nfft=512)
    np.testing.assert_allclose(out[0], 2 * noise, atol=1e-4)
    np.testing.assert_allclose(out[1], noise, atol=1e-4)
    assert np.abs(out[3]).max() < 1e-4


def _unclaimed_tone(freq: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A voice at 440 Hz that its estimate claims, and a tone at `freq` that the estimates barely claim (equal
    faint traces, 40 dB down, in the vocals and in 'other'): (stems, song, voice, tone)."""
    t = np.arange(SR) / SR
    voice = np.tile(0.5 * np.sin(2 * np.pi * 440 * t), (2, 1)).astype(np.float32)
    tone = np.tile(0.5 * np.sin(2 * np.pi * freq * t), (2, 1)).astype(np.float32)
    zero = np.zeros_like(voice)
    return np.stack([zero, zero, 0.01 * tone, voice + 0.01 * tone]), voice + tone, voice, tone


def test_strict_vocals_leave_what_no_stem_explains_to_the_accompaniment():
    """Below the treble `vocals` hands the voice half of an unclaimed 1 kHz tone (-6 dB), `vocals-strict` nearly
    none of it."""
    stems, mix, voice, tone = _unclaimed_tone(1000)
    plain = refine(stems, mix, "vocals", SOURCES)
    strict = refine(stems, mix, "vocals-strict", SOURCES)
    assert -7 < _band_db(plain[3], 1000) - _band_db(tone, 1000) < -5
    assert _band_db(strict[3], 1000) - _band_db(tone, 1000) < -35
    assert abs(_band_db(strict[3], 440) - _band_db(voice, 440)) < 0.5  # the voice it does claim stays
    np.testing.assert_allclose(strict.sum(axis=0), mix, atol=1e-4)


@pytest.mark.parametrize("freq, low, high", [(1500, -7, -5), (2800, -99, -25), (6000, -99, -35), (12000, -99, -35)])
def test_vocals_leave_the_unclaimed_treble_to_the_accompaniment(freq, low, high):
    """`vocals` counts what no stem explains as accompaniment from 2 kHz, fully from 4 kHz: a hi-hat-like tone
    that the estimates barely claim stays out of the vocals stem there, as with `vocals-strict`, while below 2 kHz
    it is shared as before; the voice and the sum stay whole."""
    stems, mix, voice, tone = _unclaimed_tone(freq)
    out = refine(stems, mix, "vocals", SOURCES)
    assert low < _band_db(out[3], freq) - _band_db(tone, freq) < high
    assert abs(_band_db(out[3], 440) - _band_db(voice, 440)) < 0.5
    np.testing.assert_allclose(out.sum(axis=0), mix, atol=1e-4)


def test_treble_weight_fades_in_between_the_two_frequencies():
    weight = treble_weight(8192, SR).numpy()
    freqs = np.fft.rfftfreq(8192, 1 / SR)
    low, high = TREBLE_HZ
    assert weight.shape == freqs.shape
    assert (weight[freqs <= low] == 0).all() and (weight[freqs >= high] == 1).all()
    middle = (freqs > low) & (freqs < high)
    assert np.all(np.diff(weight[middle]) > 0)
    assert weight[np.argmin(np.abs(freqs - np.sqrt(low * high)))] == pytest.approx(0.5, abs=0.01)  # log-linear
    at_48k = treble_weight(8192, 48000).numpy()  # the same frequencies at another model rate
    assert at_48k[np.argmin(np.abs(np.fft.rfftfreq(8192, 1 / 48000) - 3000))] == pytest.approx(
        weight[np.argmin(np.abs(freqs - 3000))], abs=0.01)


def test_modes_resolve_from_the_card():
    assert resolve_mode("auto", {"separation": {"refine": "vocals"}}, SOURCES) == "vocals"
    assert resolve_mode("auto", {}, SOURCES) == "off"
    assert resolve_mode("off", {"separation": {"refine": "vocals"}}, SOURCES) == "off"
    assert resolve_mode("auto", {"separation": {"refine": "vocals"}}, ["drums", "rest"]) == "off"
    assert resolve_mode("auto", {"separation": {"refine": "bogus"}}, SOURCES) == "off"
    assert resolve_mode("wiener", None, ["vocals"]) == "off"  # one stem owns the whole song anyway
    with pytest.raises(StemGUIError, match="needs a vocals stem"):
        resolve_mode("vocals", None, ["drums", "bass"])
    with pytest.raises(StemGUIError, match="refine must be one of"):
        resolve_mode("median", None, SOURCES)
    with pytest.raises(StemGUIError, match="'vocals-strict' needs a vocals stem"):
        resolve_mode("vocals-strict", None, ["drums", "bass"])
    assert REFINE_MODES == ("off", "ratio", "wiener", "vocals", "vocals-strict")


def test_vocals_masks_need_the_song_and_the_treble_weight():
    specs = torch.ones(4, 2, 5, 3, dtype=torch.complex64)
    with pytest.raises(StemGUIError, match="needs the song's spectrum and the treble weight"):
        masks(specs, "vocals", 3, specs[0])
    with pytest.raises(StemGUIError, match="'vocals-strict' needs the song's spectrum$"):
        masks(specs, "vocals-strict", 3)


# ---------------------------------------------------------------- the engine


class WobbleModel(ScaleModel):
    """Stems whose shares move with time and channel, so that masks differ from frame to frame."""

    def forward(self, mix):
        n = mix.shape[-1]
        phase = torch.linspace(0, 6.0, n)
        shares = torch.stack([torch.sin(phase + k) ** 2 + 0.05 for k in range(4)])  # (4, n)
        return mix[:, None] * shares[None, :, None, :]


def test_engine_refinement_of_constant_shares_is_exact():
    """A model that gives each stem a fixed share w_j: Wiener masks are w_j^2 / sum w^2 in every bin."""
    mix = np.random.default_rng(1).standard_normal((2, 3 * SR + 17)).astype(np.float32)
    w = np.array([0.1, 0.2, 0.3, 0.4], np.float32)
    for mode, expected in (("off", w), ("ratio", w / w.sum()), ("wiener", w**2 / (w**2).sum())):
        sep = Separator(ScaleModel(), SeparationSettings(segment=1.0, device="cpu", refine=mode))
        assert sep.refine_mode == mode
        np.testing.assert_allclose(sep.separate(mix), mix[None] * expected[:, None, None], atol=2e-5)


def test_engine_refines_what_it_would_have_given_and_streams_it(stereo_noise):
    mix = stereo_noise
    raw = Separator(WobbleModel(), SeparationSettings(segment=1.0, device="cpu", refine="off")).separate(mix)
    sep = Separator(WobbleModel(), SeparationSettings(segment=1.0, device="cpu", refine="vocals"))
    regions = []
    whole = sep.separate(mix, on_chunk=lambda a, b, x: regions.append((a, b, x.copy())))
    np.testing.assert_allclose(whole, refine(raw, mix, "vocals", SOURCES), atol=2e-5)
    assert regions[0][0] == 0 and regions[-1][1] == mix.shape[-1]
    assert all(r[1] == s[0] for r, s in zip(regions, regions[1:]))
    np.testing.assert_allclose(np.concatenate([r[2] for r in regions], axis=-1), whole)
    streamed = []
    blocks = [mix[:, i:i + 10_000] for i in range(0, mix.shape[-1], 10_000)]
    sep.separate_stream(blocks, mix.shape[-1], on_chunk=lambda a, b, x: streamed.append(x.copy()))
    np.testing.assert_allclose(np.concatenate(streamed, axis=-1), whole, atol=1e-6)


def test_engine_follows_the_card_and_records_the_mode():
    card = {"name": "m", "separation": {"refine": "wiener"}}
    sep = Separator(ScaleModel(), SeparationSettings(device="cpu"), card)
    assert sep.refine_mode == "wiener"
    sidecar = sep.sidecar(None, 1.0)
    assert sidecar["refine"] == "wiener" and sidecar["settings"]["refine"] == "auto"
    assert Separator(ScaleModel(), SeparationSettings(device="cpu"), {}).refine_mode == "off"
    with pytest.raises(StemGUIError, match="refine must be one of"):
        Separator(ScaleModel(), SeparationSettings(device="cpu", refine="loud"))


# ---------------------------------------------------------------- command line


def test_separate_cli_refines_and_says_so(tmp_path, tiny_model_path):
    from stemgui.cli import main

    rng = np.random.default_rng(4)
    song = tmp_path / "song.wav"
    sf.write(song, (0.3 * rng.standard_normal((SR * 2, 2))).astype(np.float32), SR, subtype="FLOAT")
    out = {}
    for mode in ("off", "wiener"):
        assert main(["separate", str(song), "-o", str(tmp_path / mode), "--model", str(tiny_model_path),
                     "--refine", mode, "--bit-depth", "32"]) == 0
        folder = tmp_path / mode / "song"
        sidecar = json.loads((folder / "separation.json").read_text())
        assert sidecar["refine"] == mode
        assert sidecar["refine_rules"] == (None if mode == "off" else RULES_VERSION)
        out[mode] = np.stack([sf.read(folder / f"{s}.wav", dtype="float32")[0] for s in SOURCES])
    mix, _ = sf.read(song, dtype="float32")
    np.testing.assert_allclose(out["wiener"].sum(axis=0), mix, atol=1e-4)  # refined stems add up to the song
    assert np.abs(out["off"].sum(axis=0) - mix).max() > 1e-2  # a random model's raw stems do not
    with pytest.raises(SystemExit):
        main(["separate", str(song), "--refine", "loud"])


def test_evaluate_scores_a_model_once_per_refinement():
    import argparse

    from stemgui.cli.evaluate import systems_from_args
    from stemgui.errors import ConfigError

    args = argparse.Namespace(model="default", oracle="irm", compare=["other.safetensors"], refine="off,vocals")
    systems = systems_from_args(args)
    assert [(s.name, s.refine) for s in systems] == [
        ("default+off", "off"), ("default+vocals", "vocals"), ("oracle-IRM", "auto"),
        ("other+off", "off"), ("other+vocals", "vocals")]
    args.refine = "auto"
    assert [s.name for s in systems_from_args(args)] == ["default", "oracle-IRM", "other"]
    args.refine = "off,sharp"
    with pytest.raises(ConfigError, match="--refine"):
        systems_from_args(args)


@pytest.mark.parametrize("mode", ["ratio", "wiener", "vocals", "vocals-strict"])
def test_the_training_batch_refinement_equals_the_engines(mode):
    """refine_batch (differentiable, used in training with loss.refine) gives what `refine` gives each item."""
    from stemgui.refine import refine_batch

    items = [_stems(9_000, seed) for seed in (1, 2)]
    stems = np.stack([s for s, _ in items])
    mix = np.stack([m for _, m in items])
    out = refine_batch(torch.from_numpy(stems), torch.from_numpy(mix), mode, 3, nfft=1024).numpy()
    for k in range(2):
        np.testing.assert_allclose(out[k], refine(stems[k], mix[k], mode, SOURCES, nfft=1024), atol=2e-6)
    silent = torch.zeros(1, 4, 2, 4_000, requires_grad=True)  # gradients stay finite at silent estimates
    refine_batch(silent, torch.from_numpy(mix[:1, :, :4_000]), mode, 3, nfft=512).square().sum().backward()
    assert torch.isfinite(silent.grad).all()
