"""Importing published Hybrid Demucs checkpoints, and resumable verified downloads from a local HTTP server."""

from __future__ import annotations

import hashlib
import os
import pickle
import random
from pathlib import Path

import pytest
import torch

from stemgui import SOURCES
from stemgui.errors import Cancelled, DownloadError, ModelError
from stemgui.models.download import download, part_path
from stemgui.models.legacy import import_checkpoint, import_to_card, map_torchaudio_keys

from http_server import server  # noqa: F401 - a pytest fixture
from reference import import_demucs, reference_hdemucs_class

SMALL = dict(channels=8, depth=5, dconv_lstm=3, dconv_attn=3, segment=11)


def _reference(sources=SOURCES, seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    return reference_hdemucs_class()(list(sources), **(kwargs or SMALL)).eval()


def _write_demucs_th(model, folder: Path) -> Path:
    """A `.th` written the way the Demucs project publishes them (float16 state, name with checksum)."""
    import_demucs()
    from demucs.states import save_with_checksum, serialize_model
    from omegaconf import OmegaConf

    save_with_checksum(serialize_model(model, OmegaConf.create({"epochs": 1})), folder / "hdemucs.th")
    (path,) = folder.glob("hdemucs-*.th")
    return path


def _mix(seconds: float = 1.0) -> torch.Tensor:
    return 0.3 * torch.randn(1, 2, int(44100 * seconds) + 5, generator=torch.Generator().manual_seed(7))


# -------------------------------------------------------------------------------------------------
# import
# -------------------------------------------------------------------------------------------------


def test_import_demucs_th_to_card_matches_reference(tmp_path: Path) -> None:
    import_demucs()
    from demucs.states import load_model as demucs_load_model

    from stemgui.models.card import load_model, read_card

    th = _write_demucs_th(_reference(), tmp_path)
    imported = import_checkpoint(th)
    state, kwargs, sources = imported.state, imported.kwargs, imported.sources
    assert imported.architecture == "hdemucs"
    assert sources == list(SOURCES) and imported.samplerate == 44100
    assert kwargs["channels"] == 8 and kwargs["segment"] == 11
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())

    out = import_to_card(th, tmp_path / "models", "imported")
    assert out == tmp_path / "models" / "imported.safetensors" and out.is_file()
    card = read_card(out)
    assert card["architecture"] == "hdemucs" and card["sources"] == list(SOURCES)
    assert card["training"]["imported_from"] == th.name
    model, _ = load_model(out)

    # The reference loads the same float16-rounded weights (trusted file we just wrote: plain unpickling).
    reference = demucs_load_model(torch.load(th, map_location="cpu", weights_only=False)).eval()
    mix = _mix()
    with torch.no_grad():
        assert (model(mix) - reference(mix)).abs().max().item() <= 1e-4


def test_import_plain_state_dict_infers_architecture(tmp_path: Path) -> None:
    from stemgui.models.hdemucs import HDemucs

    ref = _reference(("vocals", "drums", "bass", "other"), channels=8, depth=5, channels_time=12, context_enc=1,
                     dconv_lstm=4, dconv_attn=5, growth=1.5, norm_starts=5)
    torch.save(ref.state_dict(), tmp_path / "weights.pt")
    imported = import_checkpoint(tmp_path / "weights.pt")
    state, kwargs, sources = imported.state, imported.kwargs, imported.sources
    assert sources == list(SOURCES)  # a plain state dict cannot name them: the published order is assumed
    expected = {"channels": 8, "depth": 5, "channels_time": 12, "context_enc": 1, "dconv_lstm": 4,
                "dconv_attn": 5, "growth": 1.5, "norm_starts": 5}
    assert {k: kwargs[k] for k in expected} == expected
    ours = HDemucs(sources, **kwargs).eval()
    ours.load_state_dict(state, strict=True)
    mix = _mix(1.0)
    with torch.no_grad():
        assert (ours(mix) - ref(mix)).abs().max().item() <= 1e-4


def _torchaudio_state(ref) -> dict[str, torch.Tensor]:
    """The reference weights under torchaudio's names, with its unused norm in the last time encoder."""
    names = {"encoder.": "freq_encoder.", "decoder.": "freq_decoder.", "tencoder.": "time_encoder.",
             "tdecoder.": "time_decoder."}
    state = {}
    for key, value in ref.state_dict().items():
        prefix = next((p for p in names if key.startswith(p)), None)
        state[names[prefix] + key[len(prefix):] if prefix else key] = value
    last = len(ref.tencoder) - 1
    width = state[f"time_encoder.{last}.conv.weight"].shape[0]
    state[f"time_encoder.{last}.norm1.weight"] = torch.ones(width)
    state[f"time_encoder.{last}.norm1.bias"] = torch.zeros(width)
    return state


def test_import_torchaudio_named_state_dict(tmp_path: Path) -> None:
    from stemgui.models.hdemucs import HDemucs

    ref = _reference(channels=8, depth=6)
    ta_state = _torchaudio_state(ref)
    mapped = map_torchaudio_keys(ta_state)
    assert set(mapped) == set(ref.state_dict())
    torch.save(ta_state, tmp_path / "hdemucs_high_trained.pt")
    imported = import_checkpoint(tmp_path / "hdemucs_high_trained.pt")
    state, kwargs, sources = imported.state, imported.kwargs, imported.sources
    ours = HDemucs(sources, **kwargs).eval()
    ours.load_state_dict(state, strict=True)
    mix = _mix(1.0)
    with torch.no_grad():
        assert (ours(mix) - ref(mix)).abs().max().item() <= 1e-4


def test_import_with_wrong_explicit_args_is_a_clear_error(tmp_path: Path) -> None:
    torch.save(_reference().state_dict(), tmp_path / "w.pt")
    with pytest.raises(ModelError, match=r"w\.pt: weights do not match"):
        import_checkpoint(tmp_path / "w.pt", kwargs={"channels": 16})
    with pytest.raises(ModelError, match="give their source names"):
        torch.save(_reference(("a", "b"), channels=8, depth=5).state_dict(), tmp_path / "two.pt")
        import_checkpoint(tmp_path / "two.pt")
    imported = import_checkpoint(tmp_path / "two.pt", sources=["vocals", "rest"])
    assert imported.sources == ["vocals", "rest"] and imported.state


def _fake_package(klass, path: Path, **extra) -> Path:
    torch.save({"klass": klass, "args": (), "kwargs": {"sources": list(SOURCES)}, "state": {}, **extra}, path)
    return path


def test_unsupported_architectures_are_refused(tmp_path: Path) -> None:
    import sys
    import types

    fake = types.ModuleType("demucs.tasnet")  # pickled by name: the class only needs to be importable here
    ConvTasNet = type("ConvTasNet", (), {"__module__": "demucs.tasnet"})
    fake.ConvTasNet = ConvTasNet
    sys.modules.setdefault("demucs.tasnet", fake)
    with pytest.raises(ModelError, match=r"tasnet\.th: is a Conv-TasNet checkpoint, which StemGUI cannot run"):
        import_checkpoint(_fake_package(ConvTasNet, tmp_path / "tasnet.th"))
    torch.save({"crosstransformer.layers.0.w": torch.zeros(2), "encoder.0.conv.weight": torch.zeros(2, 4, 8, 1)},
               tmp_path / "ht_state.pt")
    with pytest.raises(ModelError, match="Hybrid Transformer Demucs .* without its arguments"):
        import_checkpoint(tmp_path / "ht_state.pt")
    torch.save({"fc.weight": torch.zeros(3, 3)}, tmp_path / "other.pt")
    with pytest.raises(ModelError, match=r"other\.pt: not a Hybrid Demucs state dict"):
        import_checkpoint(tmp_path / "other.pt")
    quantized = _reference().state_dict() | {"__quantized": True}
    torch.save({"klass": type(_reference()), "args": (), "kwargs": {"sources": list(SOURCES)},
                "state": quantized}, tmp_path / "q.th")
    with pytest.raises(ModelError, match="quantized"):
        import_checkpoint(tmp_path / "q.th")


def test_garbage_and_missing_files_are_clear_errors(tmp_path: Path) -> None:
    rng = random.Random(7)  # many fixed garbage files: the unpickler fails in many ways on random bytes
    for i in range(300):
        junk = rng.randbytes(2000)
        if i % 3 == 1:
            junk = b"\x80\x02" + junk  # a pickle protocol header, so the bytes reach the unpickler's opcodes
        (tmp_path / "junk.th").write_bytes(junk)
        with pytest.raises(ModelError, match=r"junk\.th: not a readable PyTorch checkpoint"):
            import_checkpoint(tmp_path / "junk.th")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(ModelError, match=r"empty\.pt"):
        import_checkpoint(tmp_path / "empty.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(ModelError, match=r"list\.pt: not a model checkpoint"):
        import_checkpoint(tmp_path / "list.pt")
    with pytest.raises(ModelError, match="file not found"):
        import_checkpoint(tmp_path / "nope.th")
    with pytest.raises(ModelError, match="not a file"):
        import_checkpoint(tmp_path)
    torch.save(_reference().state_dict(), tmp_path / "w.pt")
    with pytest.raises(ModelError, match="invalid model name"):
        import_to_card(tmp_path / "w.pt", tmp_path / "models", "../escape")
    assert not (tmp_path / "models").exists()


class _Exploit:
    """Unpickling this runs a shell command: exactly what a hostile checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickles_are_refused_without_running_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    torch.save({"klass": _Exploit(marker), "args": (), "kwargs": {}, "state": {}}, tmp_path / "evil.th")
    for protocol in (2, 4):
        with open(tmp_path / f"evil_raw{protocol}.pt", "wb") as f:
            pickle.dump({"encoder.0.conv.weight": _Exploit(marker)}, f, protocol=protocol)
    for name in ("evil.th", "evil_raw2.pt"):
        with pytest.raises(ModelError, match=rf"{name}: refused to load: .*other than weights \(posix\.system\)"):
            import_checkpoint(tmp_path / name)
    with pytest.raises(ModelError, match=r"evil_raw4\.pt: not a readable PyTorch checkpoint"):
        import_checkpoint(tmp_path / "evil_raw4.pt")  # torch's restricted unpickler stops at the first opcode
    assert not marker.exists()
    # A class the file names but we do not know is refused too, even if harmless.
    torch.save({"klass": _Exploit, "args": (), "kwargs": {}, "state": {}}, tmp_path / "cls.th")
    with pytest.raises(ModelError, match="refused to load"):
        import_checkpoint(tmp_path / "cls.th")


# -------------------------------------------------------------------------------------------------
# download
# -------------------------------------------------------------------------------------------------


PAYLOAD = random.Random(3).randbytes(300_000)
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


def test_full_download_with_progress_and_checksum(server, tmp_path: Path) -> None:
    server.files["/model.th"] = PAYLOAD
    seen: list[tuple[int, int | None]] = []
    dest = download(f"{server.url}/model.th", tmp_path / "sub" / "model.th", sha256=DIGEST,
                    progress=lambda done, total: seen.append((done, total)))
    assert dest.read_bytes() == PAYLOAD
    assert not part_path(dest).exists()
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    # Already there with the right checksum: no second request.
    before = len(server.requests)
    assert download(f"{server.url}/model.th", dest, sha256=DIGEST) == dest
    assert len(server.requests) == before


def test_interrupted_download_resumes_with_range(server, tmp_path: Path) -> None:
    server.files["/big.bin"] = PAYLOAD
    server.truncate.add("/big.bin")
    dest = tmp_path / "big.bin"
    with pytest.raises(DownloadError, match="interrupted .*run it again to resume"):
        download(f"{server.url}/big.bin", dest, sha256=DIGEST)
    assert not dest.exists()
    kept = part_path(dest).stat().st_size
    assert 0 < kept < len(PAYLOAD)
    assert part_path(dest).read_bytes() == PAYLOAD[:kept]

    seen: list[int] = []
    download(f"{server.url}/big.bin", dest, sha256=DIGEST, progress=lambda done, total: seen.append(done))
    assert dest.read_bytes() == PAYLOAD
    assert server.requests[-1] == ("/big.bin", f"bytes={kept}-")
    assert seen[0] == kept  # progress starts from what was already there


def test_server_ignoring_range_restarts_cleanly(server, tmp_path: Path) -> None:
    server.files["/f"] = PAYLOAD
    server.ignore_range.add("/f")
    dest = tmp_path / "f"
    part_path(dest).write_bytes(b"stale bytes from another file")
    download(f"{server.url}/f", dest, sha256=DIGEST)
    assert dest.read_bytes() == PAYLOAD


def test_complete_part_file_is_finished_without_downloading(server, tmp_path: Path) -> None:
    server.files["/f"] = PAYLOAD
    dest = tmp_path / "f"
    part_path(dest).write_bytes(PAYLOAD)
    download(f"{server.url}/f", dest, sha256=DIGEST)
    assert dest.read_bytes() == PAYLOAD and not part_path(dest).exists()


def test_checksum_mismatch_removes_partial(server, tmp_path: Path) -> None:
    server.files["/model.th"] = PAYLOAD
    dest = tmp_path / "model.th"
    with pytest.raises(DownloadError, match=r"checksum mismatch for model\.th .*removed"):
        download(f"{server.url}/model.th", dest, sha256="0" * 64)
    assert not dest.exists() and not part_path(dest).exists()


def test_http_errors_and_bad_urls(server, tmp_path: Path) -> None:
    dest = tmp_path / "missing.th"
    with pytest.raises(DownloadError, match="HTTP error 404"):
        download(f"{server.url}/missing.th", dest)
    assert not dest.exists() and not part_path(dest).exists()
    with pytest.raises(DownloadError, match="only http"):
        download("file:///etc/passwd", dest)
    port = server.server_address[1]
    server.shutdown()
    server.server_close()
    with pytest.raises(DownloadError, match="cannot connect"):
        download(f"http://127.0.0.1:{port}/x", dest, timeout=5)


def test_cancel_keeps_partial_for_resume(server, tmp_path: Path) -> None:
    server.files["/f"] = PAYLOAD
    dest = tmp_path / "f"
    calls = {"n": 0}

    def cancel_after_two_chunks() -> bool:
        calls["n"] += 1
        return calls["n"] > 2

    with pytest.raises(Cancelled):
        download(f"{server.url}/f", dest, cancel=cancel_after_two_chunks)
    assert not dest.exists()
    assert 0 < part_path(dest).stat().st_size < len(PAYLOAD)
    download(f"{server.url}/f", dest, sha256=DIGEST)
    assert dest.read_bytes() == PAYLOAD


def test_headline_score_says_what_it_was_measured_on() -> None:
    from stemgui.models.card import headline_score

    assert headline_score({"metrics": {"test_usdr_mean": 2.449, "valid_sdr_mean": 2.2}}) == "held-out uSDR 2.45 dB"
    assert headline_score({"metrics": {"valid_sdr_mean": 2.2}}) == "validation SDR 2.20 dB"
    assert headline_score({"metrics": {}}) is None and headline_score({}) is None
