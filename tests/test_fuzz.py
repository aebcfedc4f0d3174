"""Fuzzing the whole `stemgui separate` path with damaged files of every container we read.

Seeded random truncations, bit flips, garbage after a valid magic number, and headers that lie about length,
sample rate or channel count (wav, flac, ogg/vorbis, opus, mp3, m4a). Whatever the file, the CLI either
separates it (rc 0, a complete folder) or exits 1 with exactly one `stemgui: error: FILE: ...` line and no
output folder: never a traceback, a hang, decoder chatter on the terminal or a half-written folder. A fixed,
small set runs in CI; `-m slow` runs many more seeds.
"""

from __future__ import annotations

import struct
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from stemgui.cli import main

SR = 44100
CONTAINERS = ("wav", "flac", "ogg", "opus", "mp3", "m4a")
STEMS = ["bass.wav", "drums.wav", "other.wav", "separation.json", "vocals.wav"]


def _clean(kind: str, folder: Path) -> bytes:
    rng = np.random.default_rng(0)
    rate = 48000 if kind == "opus" else SR
    t = np.arange(int(rate * 0.4)) / rate
    wav = (0.3 * np.sin(2 * np.pi * 330 * t)[None] + 0.05 * rng.standard_normal((2, len(t)))).astype(np.float32)
    path = folder / f"clean.{kind}"
    if kind == "m4a":
        with av.open(str(path), "w") as container:
            stream = container.add_stream("aac", rate=rate)
            stream.layout = "stereo"
            for i in range(0, wav.shape[1], 1024):
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(wav[:, i:i + 1024]), format="fltp",
                                                   layout="stereo")
                frame.sample_rate, frame.pts = rate, i
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)
    else:
        fmt = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"), "ogg": ("OGG", "VORBIS"),
               "opus": ("OGG", "OPUS"), "mp3": ("MP3", "MPEG_LAYER_III")}[kind]
        sf.write(path, wav.T, rate, format=fmt[0], subtype=fmt[1])
    return path.read_bytes()


@pytest.fixture(scope="module")
def clean_files(tmp_path_factory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("clean")
    return {kind: _clean(kind, folder) for kind in CONTAINERS}


def mutate(data: bytes, how: str, rng: np.random.Generator) -> bytes:
    b = bytearray(data)
    if how == "truncate":
        return bytes(b[: int(rng.integers(1, len(b)))])
    if how == "flip":
        for _ in range(int(rng.integers(1, 40))):
            i = int(rng.integers(0, len(b)))
            b[i] ^= 1 << int(rng.integers(0, 8))
        return bytes(b)
    if how == "flip-header":  # damage where the decoders look first
        for _ in range(int(rng.integers(1, 6))):
            i = int(rng.integers(0, min(len(b), 96)))
            b[i] ^= 1 << int(rng.integers(0, 8))
        return bytes(b)
    if how == "garbage":  # a valid magic number, then noise
        keep = int(rng.integers(4, 64))
        return bytes(b[:keep]) + rng.integers(0, 256, int(rng.integers(1, 20_000)), dtype=np.uint8).tobytes()
    if how == "splice":  # a chunk of the file repeated or dropped in the middle
        i, j = sorted(int(x) for x in rng.integers(0, len(b), 2))
        return bytes(b[:i] + b[j:]) if rng.random() < 0.5 else bytes(b[:j] + b[i:j] + b[j:])
    raise ValueError(how)


def _riff(data: bytes, field: str, value: int) -> bytes:
    """A canonical 44-byte-header WAV with one header field replaced."""
    b = bytearray(data)
    offsets = {"riff_size": (4, "<I"), "channels": (22, "<H"), "rate": (24, "<I"), "byte_rate": (28, "<I"),
               "block_align": (32, "<H"), "bits": (34, "<H"), "data_size": (40, "<I")}
    off, fmt = offsets[field]
    assert b[36:40] == b"data", "the clean wav must have the canonical layout"
    struct.pack_into(fmt, b, off, value)
    return bytes(b)


def _flac_streaminfo(data: bytes, field: str, value: int) -> bytes:
    """Replace the sample rate (20 bits), channels-1 (3 bits) or total samples (36 bits) of STREAMINFO."""
    b = bytearray(data)
    assert b[:4] == b"fLaC"
    start = 8  # 'fLaC' + metadata block header; STREAMINFO body begins here
    bits = int.from_bytes(b[start + 10:start + 18], "big")  # rate:20 channels:3 bps:5 total:36
    if field == "rate":
        bits = (bits & ~(((1 << 20) - 1) << 44)) | ((value & ((1 << 20) - 1)) << 44)
    elif field == "channels":
        bits = (bits & ~(0b111 << 41)) | (((value - 1) & 0b111) << 41)
    elif field == "total":
        bits = (bits & ~((1 << 36) - 1)) | (value & ((1 << 36) - 1))
    b[start + 10:start + 18] = bits.to_bytes(8, "big")
    return bytes(b)


LIES = [
    ("wav", "rate", 1), ("wav", "rate", 0), ("wav", "rate", 4_000_000_000), ("wav", "rate", 400),
    ("wav", "channels", 0), ("wav", "channels", 65535), ("wav", "channels", 7), ("wav", "data_size", 0xFFFFFFF0),
    ("wav", "data_size", 10), ("wav", "riff_size", 12), ("wav", "bits", 0), ("wav", "block_align", 0),
    ("flac", "rate", 0), ("flac", "rate", 1), ("flac", "rate", 655350), ("flac", "channels", 8),
    ("flac", "total", (1 << 36) - 1), ("flac", "total", 1000),
]


def run_case(path: Path, out: Path, model: Path, capfd) -> None:
    rc = main(["separate", str(path), "-o", str(out), "--model", str(model), "--device", "cpu"])
    err = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    assert "Traceback" not in "\n".join(err)
    made = sorted(p.name for p in out.iterdir()) if out.exists() else []
    if rc == 1:
        assert len(err) == 1 and err[0].startswith(f"stemgui: error: {path}"), err
        assert made == [], made
    else:
        assert rc == 0, (rc, err)
        assert made == [path.stem] and sorted(p.name for p in (out / path.stem).iterdir()) == STEMS
        assert all(line.startswith("stemgui: warning: ") or "stems written to" in line for line in err), err


def _cases(seeds: range) -> list[tuple[str, str, int]]:
    hows = ("truncate", "flip", "flip-header", "garbage", "splice")
    return [(kind, how, seed) for seed in seeds for kind in CONTAINERS for how in hows]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind,how,seed", _cases(range(1)))
def test_damaged_files(kind, how, seed, clean_files, tmp_path, tiny_model_path, capfd):
    rng = np.random.default_rng([seed, CONTAINERS.index(kind), len(how)])
    path = tmp_path / f"fuzz-{how}.{kind}"
    path.write_bytes(mutate(clean_files[kind], how, rng))
    run_case(path, tmp_path / "out", tiny_model_path, capfd)


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind,how,seed", _cases(range(1, 21)))
def test_damaged_files_many_seeds(kind, how, seed, clean_files, tmp_path, tiny_model_path, capfd):
    test_damaged_files(kind, how, seed, clean_files, tmp_path, tiny_model_path, capfd)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind,field,value", LIES)
def test_headers_that_lie(kind, field, value, clean_files, tmp_path, tiny_model_path, capfd):
    data = _riff(clean_files[kind], field, value) if kind == "wav" else _flac_streaminfo(clean_files[kind], field,
                                                                                           value)
    path = tmp_path / f"lie-{field}-{value}.{kind}"
    path.write_bytes(data)
    run_case(path, tmp_path / "out", tiny_model_path, capfd)


def test_wrong_suffix_and_empty_like_files(clean_files, tmp_path, tiny_model_path, capfd):
    """A flac named .mp3 and an m4a named .wav are read by content; a header alone is one error line."""
    for name, data in (("really-flac.mp3", clean_files["flac"]), ("really-m4a.wav", clean_files["m4a"])):
        path = tmp_path / name
        path.write_bytes(data)
        run_case(path, tmp_path / f"out-{name}", tiny_model_path, capfd)
    for kind in CONTAINERS:
        path = tmp_path / f"header-only.{kind}"
        path.write_bytes(clean_files[kind][:44])
        run_case(path, tmp_path / f"out-h-{kind}", tiny_model_path, capfd)
