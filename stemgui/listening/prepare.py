"""`stemgui listening-test create`: separate, cut, filter, loudness-match and cache every condition once.

In MUSHRA a trial is one excerpt of one stem with all its conditions; in MOS (ACR, single-stimulus) every
condition of it is a trial of its own. The test folder gets `separations/<system>/<song>/<stem>.wav` (each system's whole-song stems, reused by a
later `create` when the system and the song are unchanged), `audio/<trial>/<condition>.wav` (the excerpts as
the listener hears them: float WAV, faded, loudness-matched) and `manifest.json`, written last, so a folder
with a manifest is complete. Objective scores (BSSEval v4 SDR/SIR/SAR on each excerpt, before matching) are
computed here when true stems exist, so a report needs only the results database.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import time
from pathlib import Path
from typing import Callable

import numpy as np

from stemgui import SOURCES
from stemgui.atomic import atomic_write_text
from stemgui.audio.load import convert_channels, load_audio
from stemgui.audio.resample import resample
from stemgui.audio.save import save_audio
from stemgui.data.layout import stem_file
from stemgui.errors import AudioError, ConfigError
from stemgui.listening import conditions
from stemgui.listening.config import Song, System, TestConfig, load_config
from stemgui.listening.manifest import (
    FORMAT_VERSION,
    HIDDEN_REFERENCE,
    MANIFEST_NAME,
    anchor_id,
    system_id,
)

log = logging.getLogger(__name__)
ProgressFn = Callable[[str], None]
EXTRA_SUFFIXES = (".mp3", ".ogg", ".opus", ".m4a")
"""Stems folders from other tools may hold lossy files too (wav/flac are found through data.layout)."""


def _find_stem(folder: Path, name: str) -> Path | None:
    found = stem_file(folder, name)
    if found is None:
        for suffix in EXTRA_SUFFIXES:
            if (folder / f"{name}{suffix}").is_file():
                return folder / f"{name}{suffix}"
    return found


def _fit(audio: np.ndarray, length: int) -> np.ndarray:
    """(channels, samples) stereo audio cut or zero-padded to `length`."""
    audio = convert_channels(np.asarray(audio, dtype=np.float32), 2)
    if audio.shape[1] >= length:
        return audio[:, :length]
    return np.pad(audio, ((0, 0), (0, length - audio.shape[1])))


def load_true_stems(song: Song, samplerate: int, length: int) -> dict[str, np.ndarray] | None:
    """The song's true stems, every one of the four (BSSEval and the oracles need them all), or None."""
    if song.stems is None:
        return None
    out = {}
    for name in SOURCES:
        path = _find_stem(song.stems, name)
        if path is None:
            raise AudioError(f"{song.stems}: no {name}.wav or {name}.flac (a true-stems folder needs all of "
                             f"{', '.join(SOURCES)})")
        out[name] = _fit(load_audio(path, samplerate)[0], length)
    return out


def _file_key(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"


def _system_key(system: System, song: Song, cfg: TestConfig) -> dict:
    """What a cached separation depends on: if any of it changes, the system runs again."""
    key: dict = {"kind": system.kind, "song": _file_key(song.mix), "samplerate": cfg.samplerate}
    if system.kind == "model":
        from stemgui.models.card import weights_path
        from stemgui.models.registry import resolve_model

        weights = weights_path(resolve_model(system.model))
        key["model"] = _file_key(weights)
    elif system.kind == "oracle":
        key["oracle"] = system.oracle
        key["stems"] = [_file_key(_find_stem(song.stems, s)) for s in SOURCES]
    else:
        key["folder"] = str(system.folder_for(song.name, cfg.base).resolve())
    return key


def _run_model(system: System, song: Song, cfg: TestConfig, length: int) -> dict[str, np.ndarray]:
    from stemgui.separate import SeparationSettings, Separator

    settings = SeparationSettings(device=cfg.device)
    # Each song is separated once: the eager path, with no export or compile step to amortise (newer engines
    # take a `backend`; older ones have only eager).
    if "backend" in inspect.signature(Separator.from_path).parameters:
        sep = Separator.from_path(system.model, settings, backend="eager")
    else:
        sep = Separator.from_path(system.model, settings)
    wav, rate = load_audio(song.mix, sep.samplerate, channels=sep.audio_channels)
    stems = sep.separate(wav)
    out = {}
    for name, stem in zip(sep.sources, stems):
        if rate != cfg.samplerate:
            stem = resample(stem, rate, cfg.samplerate)
        out[name] = _fit(stem, length)
    return out


def _read_folder(system: System, song: Song, cfg: TestConfig, length: int) -> dict[str, np.ndarray]:
    folder = system.folder_for(song.name, cfg.base)
    if not folder.is_dir():
        raise ConfigError(f"{cfg.path}: system '{system.name}': stems folder {folder} does not exist")
    out = {}
    for name in SOURCES:
        path = _find_stem(folder, name)
        if path is not None:
            out[name] = _fit(load_audio(path, cfg.samplerate)[0], length)
    return out


def separate_song(system: System, song: Song, cfg: TestConfig, length: int, true_stems: dict | None,
                  progress: ProgressFn) -> dict[str, np.ndarray]:
    """The system's whole-song stems at the test's rate, from the cache when nothing they depend on changed."""
    cache = cfg.folder / "separations" / system.name / song.name
    key = _system_key(system, song, cfg)
    key_file = cache / "source.json"
    if key_file.is_file():
        try:
            cached = json.loads(key_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            cached = None
        if cached is not None and cached.get("key") == key:
            out = {name: _fit(load_audio(cache / f"{name}.wav")[0], length) for name in cached["stems"]}
            progress(f"{system.name} / {song.name}: cached")
            return out
    t0 = time.perf_counter()
    if system.kind == "model":
        progress(f"{system.name} / {song.name}: separating with {system.model}")
        stems = _run_model(system, song, cfg, length)
    elif system.kind == "oracle":
        from stemgui.eval.oracle import oracle_estimates

        progress(f"{system.name} / {song.name}: oracle {system.oracle}")
        est = oracle_estimates(np.stack([true_stems[s] for s in SOURCES]), system.oracle)
        stems = dict(zip(SOURCES, est))
    else:
        progress(f"{system.name} / {song.name}: reading {system.folder_for(song.name, cfg.base)}")
        stems = _read_folder(system, song, cfg, length)
    missing = [s for s in cfg.stems if s not in stems]
    if missing:
        raise ConfigError(f"{cfg.path}: system '{system.name}' gives no '{missing[0]}' stem for song '{song.name}'")
    for name, stem in stems.items():
        save_audio(cache / f"{name}.wav", stem, cfg.samplerate, bit_depth="float")
    atomic_write_text(key_file, json.dumps({"key": key, "stems": sorted(stems),
                                            "seconds": round(time.perf_counter() - t0, 3)}, indent=2))
    return stems


def objective_scores(true_stems: dict[str, np.ndarray], estimate: np.ndarray, stem: str, start: int, end: int,
                     samplerate: int) -> dict[str, float | None]:
    """BSSEval v4 SDR/SIR/SAR (median over 1 s frames) of one stem's estimate on the excerpt [start, end).

    A source's BSSEval scores depend on its own estimate and all the references only, so the other sources'
    estimates are stood in by their references (a stems folder from another tool may lack some)."""
    from stemgui.eval.bsseval import evaluate

    refs = np.stack([true_stems[s][:, start:end] for s in SOURCES])
    ests = refs.copy()
    j = SOURCES.index(stem)
    ests[j] = estimate[:, start:end]
    with np.errstate(invalid="ignore", divide="ignore"):  # silent frames are NaN, as in museval
        sdr, _isr, sir, sar = evaluate(refs.transpose(0, 2, 1), ests.transpose(0, 2, 1), win=samplerate,
                                       hop=samplerate)

    def median(values: np.ndarray) -> float | None:
        finite = values[np.isfinite(values)]
        return None if finite.size == 0 else round(float(np.median(finite)), 4)

    return {"SDR": median(sdr[j]), "SIR": median(sir[j]), "SAR": median(sar[j])}


def _trial_id(song: str, index: int, stem: str) -> str:
    return f"{song}-{index + 1}-{stem}"


def create_test(config: TestConfig | str | Path, progress: ProgressFn | None = None) -> Path:
    """Prepare the test described by `config` in its folder; returns the manifest's path."""
    cfg = config if isinstance(config, TestConfig) else load_config(config)
    say = progress or (lambda text: log.info("%s", text))
    folder = cfg.folder
    folder.mkdir(parents=True, exist_ok=True)
    manifest_path = folder / MANIFEST_NAME
    if (folder / "results.sqlite").is_file():
        raise ConfigError(f"{folder}: already holds results (results.sqlite); preparing it again would change "
                          "what the listeners rated: choose another test.folder or move the results away")
    fs = cfg.samplerate
    trials = []
    for song in cfg.songs:
        mix, _ = load_audio(song.mix, fs)
        length = mix.shape[1]
        for i, (start_s, end_s) in enumerate(song.excerpts):
            if end_s * fs > length + 1:
                raise ConfigError(f"{cfg.path}: songs '{song.name}' excerpt {i + 1} ends at {end_s:g} s, after the "
                                  f"song's end ({length / fs:.2f} s)")
        true_stems = load_true_stems(song, fs, length)
        estimates = {s.name: separate_song(s, song, cfg, length, true_stems, say) for s in cfg.systems}
        for i, (start_s, end_s) in enumerate(song.excerpts):
            start, end = int(round(start_s * fs)), int(round(end_s * fs))
            for stem in cfg.stems:
                tid = _trial_id(song.name, i, stem)
                say(f"trial {tid}: rendering conditions")
                audio: dict[str, np.ndarray] = {}
                meta: list[dict] = []
                if true_stems is not None:
                    audio[HIDDEN_REFERENCE] = conditions.cut(true_stems[stem], start, end)
                    meta.append({"id": HIDDEN_REFERENCE, "kind": "reference", "label": "hidden reference"})
                    for cutoff in cfg.anchors:
                        cid = anchor_id(cutoff)
                        audio[cid] = conditions.anchor(true_stems[stem], start, end, cutoff, fs)
                        meta.append({"id": cid, "kind": "anchor", "label": f"anchor {cutoff / 1000:g} kHz",
                                     "cutoff": cutoff})
                for system in cfg.systems:
                    cid = system_id(system.name)
                    audio[cid] = conditions.cut(estimates[system.name][stem], start, end)
                    entry = {"id": cid, "kind": "system", "label": system.name, "system": system.name}
                    if true_stems is not None and cfg.objective:
                        entry["objective"] = objective_scores(true_stems, estimates[system.name][stem], stem,
                                                              start, end, fs)
                    meta.append(entry)
                faded = {cid: conditions.fade(a, fs, cfg.fade) for cid, a in audio.items()}
                matched, reached = conditions.match_trial(faded, fs, cfg.loudness)
                if reached < cfg.loudness - 0.01:
                    say(f"trial {tid}: turned down to {reached:.1f} LUFS so no condition clips")
                for entry in meta:
                    cid = entry["id"]
                    rel = f"audio/{tid}/{cid.replace(':', '_')}.wav"
                    save_audio(folder / rel, matched[cid], fs, bit_depth="float")
                    entry["file"] = rel
                    entry["loudness"] = round(conditions.integrated_loudness(matched[cid], fs), 3) \
                        if np.any(matched[cid]) else None
                common = {"song": song.name, "stem": stem, "start": start_s, "end": end_s,
                          "loudness": round(reached, 3)}
                if cfg.mode == "mushra":  # one trial: every condition side by side, with the open reference
                    reference = next(e["file"] for e in meta if e["id"] == HIDDEN_REFERENCE)
                    trials.append({"id": tid, **common, "reference": reference, "conditions": meta})
                else:  # ACR is single-stimulus: each condition is a trial of its own, rated without a reference
                    for entry in meta:
                        trials.append({"id": f"{tid}-{entry['id'].replace(':', '_')}", **common,
                                       "reference": None, "conditions": [entry]})
    data = {
        "format": FORMAT_VERSION,
        "name": cfg.name,
        "mode": cfg.mode,
        "seed": cfg.seed,
        "samplerate": fs,
        "loudness": cfg.loudness,
        "stems": list(cfg.stems),
        "systems": [s.name for s in cfg.systems],
        "system_sources": {s.name: {"kind": s.kind, "target": s.model or s.oracle or s.folder} for s in cfg.systems},
        "config": str(cfg.path),
        "config_sha256": hashlib.sha256(cfg.path.read_bytes()).hexdigest(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "trials": trials,
    }
    atomic_write_text(manifest_path, json.dumps(data, indent=2, allow_nan=False))
    say(f"{manifest_path}: {len(trials)} trials, {sum(len(t['conditions']) for t in trials)} conditions")
    return manifest_path
