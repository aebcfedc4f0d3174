"""Offline multitrack generator: generated arrangements rendered with FluidSynth plus real MIR-1K singing.

Why: no multitrack dataset is reachable here, yet a separator must hear drums, bass, accompaniment and a real
voice on separate tracks. Each song is drawn from a seeded Generator (stemgui.data.arrange), its MIDI parts
are rendered dry by the `fluidsynth` CLI in one call (parts placed one after the other in time, so the
SoundFont loads once) with one of the installed General MIDI SoundFonts (FluidR3, MuseScore General), the
drums either from the SoundFont's kit or from a recorded multi-velocity kit (stemgui.data.drumkit). Lead
vocals are MIR-1K voice tracks (right channel), resampled to 44.1 kHz and placed as phrases on bar lines;
GM choir voices add backing vocals. Version 3 ("production") then runs a per-track chain and sends
(stemgui.data.production), a vocal chain (EQ, de-essing, compression, doubling, harmonies of the same
singer) and a mastering bus whose gain is shared by every stem; version 2's plain width/reverb/level mix
stays available (`production=False`). Stems are quantized to a grid on which every partial sum is exact, so
mixture == drums + bass + other + vocals bit for bit, in any summation order (checked after writing).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from stemgui import SOURCES
from stemgui.atomic import atomic_write
from stemgui.data.arrange import OTHER_CHS, Arrangement, make_arrangement
from stemgui.data.midi import MidiSong, write_smf
from stemgui.data.mir1k import (  # noqa: F401 (API)
    MIR1K_DEFAULT,
    clip_folder,
    default_mir1k_dir,
    is_held_out_singer,
    is_test_singer,
    singer_of,
)
from stemgui.data.production import AIR_MODES, active_rms
from stemgui.errors import DatasetError

log = logging.getLogger(__name__)

SAMPLERATE = 44100
GENERATOR_VERSION = 3
"""3: production chain, recorded kits, second SoundFont, vocal chain (2: width/reverb/level mix only)."""
READABLE_VERSIONS = (1, 2, 3)
STEM_ORDER = ("drums", "bass", "other", "backing")  # the MIDI-rendered stems, in render order
TAIL = 1.0  # seconds of silence between rendered parts, so release tails never reach the next part
DEFAULT_SOUNDFONTS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/default-GM.sf2")
SECOND_SOUNDFONTS = ("/usr/share/sounds/sf3/MuseScore_General.sf3", "/usr/share/sounds/sf2/MuseScore_General.sf2",
                     "/usr/share/sounds/sf3/MuseScore_General_Lite.sf3")
DRUM_MODES = ("soundfont", "recorded", "mixed")
FORMATS = ("float", "pcm16")
# Grid (in full-scale units) the stems are rounded to: with |x| < 8 every value and every partial sum of four
# stems fits in float32's 24-bit mantissa (float), or in int16 without overflow after peak limiting (pcm16).
GRID_BITS = {"float": 20, "pcm16": 15}
INSTRUMENTAL_STREAM = 7  # third seed word of the per-song draw that makes a song instrumental
INSTRUMENTAL_LEAD_DB = (2.0, 7.0)  # the tune's instrument above the other parts (they sit +-4 dB of each other)


@dataclass(frozen=True)
class SynthSettings:
    """What every song of a dataset shares; one song differs only by its index."""

    seconds: float = 30.0
    seed: int = 0
    subset: str = "train"
    fmt: str = "float"  # "float" (32-bit float WAV) or "pcm16" (16-bit, still exact sums)
    ext: str = "wav"  # "wav" or "flac" (flac needs fmt="pcm16")
    soundfont: str = ""  # empty: every installed one (soundfonts()), one drawn per song; else comma-separated files
    vocals_dir: str = ""  # empty: default_vocals_dir()
    # what version 3 adds; each is a switch for paired A/B runs (scripts/data_ab.py)
    production: bool = True  # per-track chains, sends, vocal chain and mastering bus (False: version 2's mix)
    drums: str = "mixed"  # soundfont | recorded (Hydrogen kits) | mixed (half the songs each)
    voice_air: str = "exciter"  # the voice's missing top octave: see stemgui.data.production.AIR_MODES
    doubling: bool = True  # lead sometimes double-tracked (delayed, detuned copy)
    harmonies: bool = True  # lead sometimes harmonised in the loud sections (pitch-shifted copies)
    lufs_min: float = -14.0  # mastering loudness range, integrated LUFS (commercial songs: about -14 to -7)
    lufs_max: float = -8.0
    # share of songs without singing (drawn per song): an instrument of `other` plays the tune where the voice
    # would sing and the vocals stem is silent, so a model learns that a lead melody is not a voice
    instrumental: float = 0.0

    def check(self) -> None:
        """Raise DatasetError on an impossible value."""
        if self.drums not in DRUM_MODES:
            raise DatasetError(f"synth setting drums={self.drums!r}: use one of {', '.join(DRUM_MODES)}.")
        if self.voice_air not in AIR_MODES:
            raise DatasetError(f"synth setting voice_air={self.voice_air!r}: use one of {', '.join(AIR_MODES)}.")
        if not -30.0 <= self.lufs_min <= self.lufs_max <= -3.0:
            raise DatasetError(f"synth settings lufs_min={self.lufs_min}, lufs_max={self.lufs_max}: "
                               "need -30 <= lufs_min <= lufs_max <= -3.")
        if not 0.0 <= self.instrumental <= 1.0:
            raise DatasetError(f"synth setting instrumental={self.instrumental}: a share of songs, 0 to 1.")

    def production_dict(self) -> dict:
        """The settings that shape the sound (stored in each song's synth.json, compared on resume)."""
        keep = ("production", "drums", "voice_air", "doubling", "harmonies", "lufs_min", "lufs_max", "instrumental")
        return {k: getattr(self, k) for k in keep}

    def is_instrumental(self, index: int) -> bool:
        """Whether song `index` has no singing: drawn from its own stream, so a share of 0 leaves every other
        draw (and so every song of an older dataset) exactly as it was."""
        if self.instrumental <= 0.0:
            return False
        return bool(np.random.default_rng([self.seed, index, INSTRUMENTAL_STREAM]).random() < self.instrumental)


SETTING_NAMES = tuple(f.name for f in dataclasses.fields(SynthSettings))


def settings_from(base: SynthSettings, values: dict) -> SynthSettings:
    """`base` with `values` (name -> value, e.g. from --set or a config file) applied and type-checked."""
    types = {f.name: type(getattr(base, f.name)) for f in dataclasses.fields(base)}
    changes = {}
    for key, value in values.items():
        if key not in types:
            raise DatasetError(f"synth setting {key!r} is unknown (known: {', '.join(SETTING_NAMES)}).")
        kind = types[key]
        try:
            if kind is bool and isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                    raise ValueError(value)
                value = value.lower() in ("true", "1", "yes", "on")
            changes[key] = kind(value)
        except (TypeError, ValueError):
            raise DatasetError(f"synth setting {key}={value!r}: expected a {kind.__name__}.") from None
    out = dataclasses.replace(base, **changes)
    out.check()
    return out


def default_vocals_dir() -> Path:
    """MIR-1K location: $STEMGUI_MIR1K, else the shared folder next to the repository."""
    return default_mir1k_dir()


# ---------------------------------------------------------------------------------------------- resources


def find_fluidsynth() -> str:
    """Path of the fluidsynth executable, or a DatasetError saying how to get it."""
    exe = shutil.which("fluidsynth")
    if exe is None:
        raise DatasetError("fluidsynth: program not found; install it (apt-get install fluidsynth) to synthesize data.")
    return exe


def find_soundfont(path: str | os.PathLike | None = None) -> Path:
    """The General MIDI SoundFont to render with: `path`, $STEMGUI_SOUNDFONT, or Debian's fluid-soundfont-gm."""
    candidates = [path] if path else [os.environ.get("STEMGUI_SOUNDFONT")] if os.environ.get("STEMGUI_SOUNDFONT") \
        else list(DEFAULT_SOUNDFONTS)
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c)
    raise DatasetError(f"{candidates[0]}: SoundFont not found; install fluid-soundfont-gm or pass --soundfont FILE.")


def soundfonts(spec: str = "") -> list[Path]:
    """The SoundFonts songs draw from: the comma-separated files of `spec`, else find_soundfont() plus Debian's
    MuseScore General (musescore-general-soundfont*) when installed (a logged notice when it is not)."""
    if spec:
        return [find_soundfont(part.strip()) for part in spec.split(",") if part.strip()]
    fonts = [find_soundfont()]
    if os.environ.get("STEMGUI_SOUNDFONT"):
        return fonts
    second = next((Path(c) for c in SECOND_SOUNDFONTS if Path(c).is_file()), None)
    if second is None:
        _notice_once("soundfont", "MuseScore General SoundFont not installed (apt-get install "
                     "musescore-general-soundfont-small): rendering with %s only", fonts[0])
    else:
        fonts.append(second)
    return fonts


_NOTICES: set[str] = set()


def _notice_once(key: str, message: str, *args) -> None:
    if key not in _NOTICES:
        _NOTICES.add(key)
        log.warning(message, *args)


def vocal_clips(vocals_dir: str | os.PathLike, subset: str) -> list[Path]:
    """MIR-1K clips of the singers of `subset`, sorted by name.

    "test" takes the held-out singers (stemgui.data.mir1k); "train" and "valid" the others, and they can
    never hold a real-voice singer (checked here, so no caller can train on the real-voice check).
    """
    try:
        folder = clip_folder(vocals_dir or None)
    except DatasetError as exc:
        raise DatasetError(f"{exc} Pass --vocals DIR.") from None
    clips = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".wav", ".flac") and "_" in p.stem)
    if not clips:
        raise DatasetError(f"{folder}: no MIR-1K clips (<singer>_<song>_<clip>.wav/.flac) in this folder.")
    want_test = subset == "test"
    chosen = [p for p in clips if is_test_singer(singer_of(p)) == want_test]
    if not chosen:
        raise DatasetError(f"{folder}: no clips of {subset} singers in this folder.")
    leaked = sorted({singer_of(p) for p in chosen if is_held_out_singer(singer_of(p))})
    if not want_test and leaked:  # cannot happen through is_test_singer; guards any future change to the split
        raise DatasetError(f"{folder}: held-out singers {', '.join(leaked)} would be used for {subset} songs.")
    return chosen


def load_voice(path: Path) -> np.ndarray:
    """MIR-1K voice (right channel) at 44.1 kHz, mono float32, trimmed to the sung part."""
    import soundfile as sf
    import soxr

    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises several types for broken files
        raise DatasetError(f"{path}: cannot read this MIR-1K clip ({exc}).") from exc
    voice = data[:, 1] if data.shape[1] > 1 else data[:, 0]
    voice = soxr.resample(voice, sr, SAMPLERATE, quality="HQ").astype(np.float32)
    hop = SAMPLERATE // 50
    frames = len(voice) // hop
    if frames == 0:
        return voice
    power = (voice[: frames * hop].reshape(frames, hop) ** 2).mean(axis=1)
    active = np.flatnonzero(power > power.max() * 1e-4)
    if len(active) == 0:
        return voice[:0]
    start = max(0, (active[0] - 1) * hop)
    end = min(len(voice), (active[-1] + 2) * hop)
    return voice[start:end]


# ---------------------------------------------------------------------------------------------- rendering


def _part(song: MidiSong, seconds: float, channels: set[int] | None = None) -> MidiSong:
    """The events of `song` (only `channels`, if given) that start within the song, plus an all-sound-off."""
    keep = (lambda ch: True) if channels is None else (lambda ch: ch in channels)
    clipped = MidiSong(programs={ch: p for ch, p in song.programs.items() if keep(ch)},
                       controls=[c for c in song.controls if c[0] < seconds and keep(c[1])])
    for n in song.notes:
        if n.start < seconds and keep(n.channel):
            clipped.notes.append(type(n)(n.start, min(n.duration, seconds + 0.2 - n.start), n.pitch,
                                         n.velocity, n.channel))
    for ch in clipped.programs:
        clipped.controls.append((seconds + 0.5, ch, 120, 0))  # all sound off: nothing rings into the next part
    return clipped


def _part_list(arr: Arrangement, split_other: bool, drums: bool) -> list[tuple[str, MidiSong, set[int] | None]]:
    """(name, song, channels) of every part to render: "other" whole, or one "other:<ch>" per instrument."""
    parts: list[tuple[str, MidiSong, set[int] | None]] = []
    if drums:
        parts.append(("drums", arr.stems["drums"], None))
    parts.append(("bass", arr.stems["bass"], None))
    if split_other:
        parts += [(f"other:{ch}", arr.stems["other"], {ch}) for ch in sorted(arr.stems["other"].programs)]
    else:
        parts.append(("other", arr.stems["other"], None))
    parts.append(("backing", arr.stems["backing"], None))
    return parts


def _render_parts(arr: Arrangement, n_samples: int, soundfont: Path, workdir: Path, split_other: bool = False,
                  drums: bool = True) -> dict[str, np.ndarray]:
    """Render the MIDI parts dry with one fluidsynth call; returns name -> (2, n_samples) float32."""
    import soundfile as sf

    seconds = n_samples / SAMPLERATE
    span = seconds + TAIL
    combined = MidiSong()
    order = _part_list(arr, split_other, drums)
    for k, (_, song, channels) in enumerate(order):
        combined.add(_part(song, seconds, channels), offset=k * span)
    combined.controls.append((len(order) * span, 15, 7, 100))  # keeps the player running to the end
    mid, wav = workdir / "parts.mid", workdir / "parts.wav"
    write_smf(combined, mid)
    # an .sf3 font's samples are Ogg Vorbis: decode only the presets the song plays (3x faster to start)
    lazy = ["-o", "synth.dynamic-sample-loading=1"] if soundfont.suffix.lower() == ".sf3" else []
    cmd = [find_fluidsynth(), "-ni", "-q", "-R", "0", "-C", "0", *lazy, "-g", "0.5", "-r", str(SAMPLERATE),
           "-O", "float", "-z", "512", "-F", str(wav), str(soundfont), str(mid)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not wav.is_file():
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        raise DatasetError(f"{soundfont}: fluidsynth failed to render ({msg[-1] if msg else 'no output'}).")
    audio, sr = sf.read(str(wav), dtype="float32", always_2d=True)
    assert sr == SAMPLERATE
    parts = {}
    for k, (name, _, _) in enumerate(order):
        start = int(round(k * span * SAMPLERATE))
        seg = audio[start:start + n_samples].T
        if seg.shape[1] < n_samples:
            seg = np.pad(seg, ((0, 0), (0, n_samples - seg.shape[1])))
        parts[name] = np.ascontiguousarray(seg)
    return parts


def _reverb_ir(rng: np.random.Generator, rt60: float, predelay: float, damping: float) -> np.ndarray:
    """Stereo exponentially decaying, low-passed noise: a cheap room that we control per stem.

    The IR stops at -45 dB (0.75 * RT60, at most 2 s): the rest is inaudible under the dry signal.
    """
    from scipy.signal import lfilter

    n = int(min(2.0, rt60 * 0.75) * SAMPLERATE)
    t = np.arange(n) / SAMPLERATE
    noise = rng.standard_normal((2, n))
    noise = lfilter([1 - damping], [1, -damping], noise, axis=1)
    ir = noise * np.exp(-6.91 * t / rt60)
    ir = np.concatenate([np.zeros((2, int(predelay * SAMPLERATE))), ir], axis=1)
    return (ir / np.sqrt((ir ** 2).sum(axis=1, keepdims=True) + 1e-12)).astype(np.float32)


def _space(x: np.ndarray, rng: np.random.Generator, width: float, wet: float, rt60: float) -> np.ndarray:
    """Stereo width (mid/side) then a stereo reverb with `wet` gain; float32 FFT convolution (fast, exact enough)."""
    import scipy.fft

    x = x.astype(np.float32, copy=False)
    mid, side = (x[0] + x[1]) * 0.5, (x[0] - x[1]) * (0.5 * width)
    y = np.stack([mid + side, mid - side])
    if wet > 0 and np.any(y):
        ir = _reverb_ir(rng, rt60, float(rng.uniform(0.0, 0.04)), float(rng.uniform(0.2, 0.75)))
        n = scipy.fft.next_fast_len(y.shape[1] + ir.shape[1], real=True)
        spec = scipy.fft.rfft(y, n=n, axis=1) * scipy.fft.rfft(ir, n=n, axis=1)
        y += wet * scipy.fft.irfft(spec, n=n, axis=1)[:, : y.shape[1]]
    return y


def _sing_section(rng: np.random.Generator, out: np.ndarray, arr: Arrangement, sec, clips: list[Path],
                  min_room: float) -> list[dict]:
    """Sing MIR-1K phrases from bar line to bar line through one section (adds into `out`)."""
    used: list[dict] = []
    bar, beat, n_samples = arr.bar_seconds, arr.step * 4, len(out)
    fade = int(0.08 * SAMPLERATE)
    t = sec.start_bar * bar + float(_pick(rng, (0.0, 0.0, 0.0, beat / 2, beat)))
    end = min((sec.start_bar + sec.bars) * bar, n_samples / SAMPLERATE)
    while t < end - min_room:
        clip = clips[int(rng.integers(len(clips)))]
        voice = load_voice(clip)
        if len(voice) < SAMPLERATE // 2:
            t += bar
            continue
        start = int(round(t * SAMPLERATE))
        piece = voice[: int((end - t) * SAMPLERATE)].astype(np.float64)
        if len(piece) < len(voice):
            piece[-fade:] *= np.linspace(1.0, 0.0, min(fade, len(piece)))
        piece[:64] *= np.linspace(0.0, 1.0, min(64, len(piece)))
        piece *= 10 ** (rng.normal(0.0, 1.5) / 20) / (np.sqrt(np.mean(piece ** 2)) + 1e-9)
        stop = min(n_samples, start + len(piece))
        out[start:stop] += piece[: stop - start]
        used.append({"clip": clip.name, "start": round(t, 3), "seconds": round((stop - start) / SAMPLERATE, 3)})
        next_bar = np.ceil((t + len(piece) / SAMPLERATE) / bar - 1e-6) * bar
        t = next_bar + (bar if rng.random() < 0.35 else 0.0)
    return used


def _lead_vocals(rng: np.random.Generator, arr: Arrangement, clips: list[Path], n_samples: int) -> tuple[np.ndarray, list[dict]]:
    """Lead phrases in every section marked `lead`; returns mono (n_samples,) and the phrases used."""
    out = np.zeros(n_samples, dtype=np.float64)
    used: list[dict] = []
    for sec in arr.sections:
        if sec.lead:
            used += _sing_section(rng, out, arr, sec, clips, min(arr.bar_seconds, 1.5))
    if not used:  # the lead sections were too short for a phrase: every song has some singing
        song_end = n_samples / SAMPLERATE
        audible = [s for s in arr.sections if s.start_bar * arr.bar_seconds < song_end - 0.5] or arr.sections
        used += _sing_section(rng, out, arr, max(audible, key=lambda s: s.bars), clips, 0.5)
    return out, used


def _pick(rng: np.random.Generator, items):
    return items[int(rng.integers(len(items)))]


def _pan(mono: np.ndarray, pan: float) -> np.ndarray:
    """Constant-power pan, pan in [-1 (left), 1 (right)]."""
    theta = (pan + 1) * np.pi / 4
    return np.stack([mono * np.cos(theta), mono * np.sin(theta)])


def _add_air(voice: np.ndarray, level_db: float) -> np.ndarray:
    """MIR-1K is sampled at 16 kHz, so nothing above 8 kHz: add an exciter's harmonics of the 3-8 kHz band.

    Without this, "no content above 8 kHz" would be a shortcut for "vocals" that real songs do not share.
    """
    from scipy.signal import butter, sosfilt

    level = active_rms(voice[None])
    if level <= 0:
        return voice
    band = sosfilt(butter(2, 3000.0, "highpass", fs=SAMPLERATE, output="sos"), voice)
    band_rms = active_rms(band[None]) + 1e-12
    air = sosfilt(butter(4, 8000.0, "highpass", fs=SAMPLERATE, output="sos"), np.tanh(2.5 * band / band_rms))
    air = sosfilt(butter(1, 12000.0, "lowpass", fs=SAMPLERATE, output="sos"), air)  # natural high-end tilt
    air *= level * 10 ** (level_db / 20) / (active_rms(air[None]) + 1e-12)
    return voice + air


def _vocals(rng, arr, clips, n_samples, backing: np.ndarray, air: str = "exciter") -> tuple[np.ndarray, list[dict]]:
    """Lead (real singing, panned, sometimes doubled or echoed) plus the GM backing choir."""
    from scipy.signal import butter, sosfilt

    from stemgui.data.production import folded_air

    lead, used = _lead_vocals(rng, arr, clips, n_samples)
    lead = sosfilt(butter(2, float(rng.uniform(60, 120)), "highpass", fs=SAMPLERATE, output="sos"), lead)
    air_db = float(rng.uniform(-32.0, -22.0))
    if air == "exciter":
        lead = _add_air(lead, air_db)
    elif air == "fold":
        lead = lead + folded_air(lead, air_db)
    stereo = _pan(lead, float(rng.uniform(-0.2, 0.2)))
    if rng.random() < 0.25:  # double-tracked feel: a short delayed copy on the other side
        d = int(rng.uniform(0.012, 0.03) * SAMPLERATE)
        stereo[1, d:] += 0.4 * lead[:-d]
    if rng.random() < 0.3:  # tempo-synced echo
        d = int(arr.step * float(_pick(rng, (2, 3, 4))) * SAMPLERATE)
        g = float(rng.uniform(0.15, 0.35))
        echo = np.zeros_like(stereo)
        echo[:, d:] += g * stereo[:, :-d]
        echo[:, 2 * d:] += g * g * stereo[:, : -2 * d]
        stereo = stereo + echo[::-1] if rng.random() < 0.5 else stereo + echo
    if np.any(backing):  # the choir sits wider and lower than the lead, in the same room
        mid, side = (backing[0] + backing[1]) / 2, (backing[0] - backing[1]) / 2 * float(rng.uniform(0.8, 1.6))
        back = np.stack([mid + side, mid - side])
        back *= active_rms(stereo) * 10 ** (rng.uniform(-14, -6) / 20) / (active_rms(back) + 1e-9)
        stereo = stereo + back
    stereo = _space(stereo, rng, 1.0, float(rng.uniform(0.08, 0.4)), float(rng.uniform(0.6, 2.2)))
    return stereo, used


# Relative stem levels (dB) before the random per-song offset.
STEM_LEVEL_DB = {"drums": 0.0, "bass": -2.0, "other": -2.0, "vocals": 0.5}


def render_song(index: int, settings: SynthSettings, clips: list[Path] | None = None) -> tuple[np.ndarray, dict]:
    """Song `index` of a dataset: stems (4, 2, T) float32 in SOURCES order, exact on the output grid, and metadata."""
    settings.check()
    rng = np.random.default_rng([settings.seed, index])
    n_samples = int(round(settings.seconds * SAMPLERATE))
    if clips is None:
        clips = vocal_clips(settings.vocals_dir, settings.subset)
    arr = make_arrangement(rng, settings.seconds, instrumental=settings.is_instrumental(index))
    fonts = soundfonts(settings.soundfont)
    soundfont = fonts[int(rng.integers(len(fonts)))] if len(fonts) > 1 else fonts[0]
    kit = _pick_kit(rng, settings.drums)
    with tempfile.TemporaryDirectory(prefix="stemgui-synth-") as tmp:
        parts = _render_parts(arr, n_samples, soundfont, Path(tmp), split_other=settings.production,
                              drums=kit is None)
    air = settings.voice_air
    if air == "mixed":
        air = str(_pick(rng, ("exciter", "fold", "lowpass")))
    if settings.production:
        stack, mix_info, phrases = _produce(rng, arr, parts, kit, clips, n_samples, settings, air)
    else:
        if kit is not None:
            parts["drums"] = _recorded_drums(rng, arr, kit, n_samples)[0]
        stack, mix_info, phrases = _mix_plain(rng, arr, parts, clips, n_samples, air)
    peak = max(stack.max(), -stack.min(), np.abs(stack.sum(axis=0)).max())
    if peak > 0.97:  # no stem may clip either (a 16-bit stem must fit, and real stems never exceed full scale)
        stack *= 0.97 / peak
        mix_info["peak_guard_db"] = round(float(20 * np.log10(0.97 / peak)), 2)
    q = 2.0 ** GRID_BITS[settings.fmt]
    np.multiply(stack, q, out=stack)
    np.round(stack, out=stack)
    stack /= q
    stack = stack.astype(np.float32)
    render = {"soundfont": soundfont.name, "drums": f"recorded:{kit.name}" if kit is not None else "soundfont",
              "voice_air": air}
    meta = {
        "generator": "stemgui.data.synth", "version": GENERATOR_VERSION, "seed": [settings.seed, index],
        "subset": settings.subset, "seconds": settings.seconds, "samplerate": SAMPLERATE, "format": settings.fmt,
        "instrumental": arr.instrumental, "settings": settings.production_dict(), "render": render,
        "arrangement": arr.describe(), "mix": mix_info, "vocal_phrases": phrases,
    }
    return stack, meta


def _pick_kit(rng: np.random.Generator, mode: str):
    """A recorded kit for this song (mode recorded, or mixed for about half the songs), else None (SoundFont)."""
    if mode == "soundfont":
        return None
    want = mode == "recorded" or rng.random() < 0.5
    if not want:
        return None
    from stemgui.data.drumkit import drumkit_dirs, find_kits

    kits = find_kits()
    if not kits:
        _notice_once("drumkits", "no recorded drum kits in %s (apt-get install hydrogen-drumkits): "
                     "SoundFont drums instead", ", ".join(str(d) for d in drumkit_dirs()))
        return None
    return kits[int(rng.integers(len(kits)))]


def _recorded_drums(rng: np.random.Generator, arr: Arrangement, kit, n_samples: int) -> tuple[np.ndarray, dict]:
    """The drum part played on a recorded kit, with overheads and room."""
    from stemgui.data.drumkit import kit_ambience, render_kit

    notes = [n for n in arr.stems["drums"].notes if n.start < n_samples / SAMPLERATE]
    close = render_kit(kit, notes, n_samples, rng, SAMPLERATE, humanize=float(rng.uniform(0.5, 1.5)))
    drums, info = kit_ambience(close, rng, SAMPLERATE)
    return drums, {"kit": kit.name, **info}


def _stack(stems: dict[str, np.ndarray], n_samples: int) -> np.ndarray:
    stack = np.empty((len(SOURCES), 2, n_samples), dtype=np.float64)
    for k, name in enumerate(SOURCES):
        stack[k] = stems.pop(name)
    return stack


def _mix_plain(rng, arr, parts, clips, n_samples, air) -> tuple[np.ndarray, dict, list[dict]]:
    """Version 2's mix: width and reverb per stem, random levels, a quiet master (-18 to -12 dB RMS)."""
    stems: dict[str, np.ndarray] = {}
    mix_info: dict[str, dict] = {}
    for name in ("drums", "bass", "other"):
        width = float(rng.uniform(0.9, 1.3) if name == "drums" else rng.uniform(0.2, 0.8) if name == "bass"
                      else rng.uniform(0.6, 1.6))
        wet = float(rng.uniform(0.0, 0.12) if name == "bass" else rng.uniform(0.03, 0.35))
        rt60 = float(rng.uniform(0.3, 2.5))
        stems[name] = _space(parts[name], rng, width, wet, rt60)
        mix_info[name] = {"width": round(width, 3), "reverb_wet": round(wet, 3), "rt60": round(rt60, 3)}
    if arr.instrumental:
        stems["vocals"], phrases = np.zeros((2, n_samples)), []
    else:
        stems["vocals"], phrases = _vocals(rng, arr, clips, n_samples, parts["backing"], air)
    _levels(rng, stems, mix_info)
    if air == "lowpass":
        from stemgui.data.production import lowpass_8k

        for name in SOURCES:
            stems[name] = lowpass_8k(stems[name])
    stack = _stack(stems, n_samples)
    target = 10 ** (float(rng.uniform(-18.0, -12.0)) / 20)
    stack *= target / (active_rms(stack.sum(axis=0)) + 1e-12)
    return stack, mix_info, phrases


def _levels(rng, stems: dict[str, np.ndarray], mix_info: dict[str, dict]) -> None:
    """Each stem to its relative level (active RMS) plus a random per-song offset, in place."""
    for name in SOURCES:
        level = active_rms(stems[name])
        if level > 0:
            gain_db = STEM_LEVEL_DB[name] + float(rng.uniform(-4.0, 4.0))
            stems[name] *= 10 ** (gain_db / 20) / level
            mix_info.setdefault(name, {})["gain_db"] = round(gain_db, 2)


GUITAR_PROGRAMS = range(24, 32)
PAD_PROGRAMS = set(range(48, 56)) | set(range(88, 96)) | {16, 19, 61}


def _other_kind(program: int, role: str) -> str:
    if program in GUITAR_PROGRAMS or role == "power":
        return "guitar"
    if role == "pad" or program in PAD_PROGRAMS:
        return "pad"
    return "lead" if role == "melody" else "keys"


def _track(rng, x: np.ndarray, kind: str, beat: float, pan: float | None = None) -> tuple[np.ndarray, dict]:
    """One track through its insert chain, placed in the stereo field, plus its reverb/delay returns."""
    from stemgui.data.production import insert_chain, run_board, sends

    board, info = insert_chain(kind, rng)
    y = run_board(board, x)
    if pan is not None:  # mono-ish sources: re-place them (their SoundFont pan is kept in the side signal)
        mid, side = y.mean(axis=0), (y[0] - y[1]) * 0.5
        theta = (pan + 1) * np.pi / 4
        y = np.stack([mid * np.cos(theta) * np.sqrt(2) + side, mid * np.sin(theta) * np.sqrt(2) - side])
        info["pan"] = round(pan, 3)
    wet, send_info = sends(y, rng, kind, beat)
    return y + wet, {**info, **send_info}


def _produce(rng, arr, parts, kit, clips, n_samples, settings: SynthSettings, air: str):
    """Version 3: per-track chains and sends, the vocal chain, then the shared mastering gain."""
    from stemgui.data.production import bus_gain, limiter_gain, lowpass_8k

    beat = arr.step * 4
    mix_info: dict[str, dict] = {}
    stems: dict[str, np.ndarray] = {}
    if kit is not None:
        drums, kit_info = _recorded_drums(rng, arr, kit, n_samples)
    else:
        drums, kit_info = _space(parts["drums"], rng, float(rng.uniform(0.9, 1.3)), float(rng.uniform(0.03, 0.2)),
                                 float(rng.uniform(0.3, 1.2))), {"kit": "soundfont"}
    stems["drums"], info = _track(rng, drums, "drums", beat)
    mix_info["drums"] = {**kit_info, **info}
    stems["bass"], mix_info["bass"] = _track(rng, parts["bass"], "bass", beat, pan=float(rng.uniform(-0.1, 0.1)))
    other = np.zeros((2, n_samples))
    mix_info["other"] = {}
    programs = arr.stems["other"].programs
    for i, ch in enumerate(OTHER_CHS):
        if ch not in programs:
            continue
        role = arr.roles[i] if i < len(arr.roles) else "comp"
        kind = _other_kind(programs[ch], role)
        y, info = _track(rng, parts[f"other:{ch}"], kind, beat)
        level = active_rms(y)
        tune = arr.instrumental and role == "melody"
        if level > 0:  # instruments balanced against each other, +-4 dB; an instrumental's tune above them
            y *= 10 ** (float(rng.uniform(*INSTRUMENTAL_LEAD_DB) if tune else rng.uniform(-4, 4)) / 20) / level
        other += y
        mix_info["other"][f"ch{ch}"] = {"kind": kind, **info, **({"tune": True} if tune else {})}
    stems["other"] = other
    if arr.instrumental:
        stems["vocals"], phrases, mix_info["vocals"] = np.zeros((2, n_samples)), [], {"instrumental": True}
    else:
        stems["vocals"], phrases, mix_info["vocals"] = _produced_vocals(rng, arr, clips, n_samples,
                                                                        parts["backing"], settings, air, beat)
    _levels(rng, stems, mix_info)
    # drum-bus limiter: recorded kits have 25 dB+ crest factors that no mastered song keeps
    crest = float(rng.uniform(12.0, 18.0))
    stems["drums"] = stems["drums"] * limiter_gain(stems["drums"], active_rms(stems["drums"]) * 10 ** (crest / 20),
                                                   lookahead=0.002)
    mix_info["drums"]["bus_crest_db"] = round(crest, 2)
    stack = _stack(stems, n_samples)
    stack *= 10 ** (-20 / 20) / (active_rms(stack.sum(axis=0)) + 1e-12)  # the bus sees a mix at -20 dB RMS
    # mix bus: a gentle linear EQ on every stem (= on the mix), then one gain envelope for all stems
    import pedalboard as pb

    from stemgui.data.production import run_board

    bus_eq = pb.Pedalboard([pb.LowShelfFilter(cutoff_frequency_hz=float(rng.uniform(60, 150)),
                                              gain_db=float(rng.uniform(-1.5, 2.5))),
                            pb.HighShelfFilter(cutoff_frequency_hz=float(rng.uniform(6000, 12000)),
                                               gain_db=float(rng.uniform(-1.0, 3.0)))])
    for k in range(len(SOURCES)):
        stack[k] = run_board(bus_eq, stack[k])
    target = float(rng.uniform(settings.lufs_min, settings.lufs_max))
    gain, bus_info = bus_gain(stack.sum(axis=0), rng, target)
    stack *= gain
    mix_info["bus"] = bus_info
    if air == "lowpass":  # after the bus: its gain envelope must not spread anything back above 8 kHz
        for k in range(len(SOURCES)):
            stack[k] = lowpass_8k(stack[k])
    return stack, mix_info, phrases


def _produced_vocals(rng, arr, clips, n_samples, backing, settings: SynthSettings, air: str, beat: float):
    """Lead (real singing) through EQ, de-esser and compressor, sometimes doubled and harmonised with
    pitch-shifted copies of the same singer, the top octave handled per `air`, then the choir, then sends."""
    from stemgui.data.production import de_ess, exciter_air, folded_air, insert_chain, pitch_shift, run_board, sends

    info: dict = {}
    lead, used = _lead_vocals(rng, arr, clips, n_samples)
    board, chain = insert_chain("vocals", rng)
    info["chain"] = chain
    lead, info["deess"] = de_ess(run_board(board, lead[None])[0][None], rng)
    lead = lead[0]
    air_db = float(rng.uniform(-32.0, -22.0))
    if air == "exciter":
        lead = lead + exciter_air(lead, air_db)
    elif air == "fold":
        lead = lead + folded_air(lead, air_db)
    info["air"] = {"mode": air, "level_db": round(air_db, 2)} if air in ("exciter", "fold") else {"mode": air}
    pan = float(rng.uniform(-0.15, 0.15))
    stereo = _pan(lead, pan)
    if settings.doubling and rng.random() < 0.4:  # double-tracked: delayed, slightly detuned, both sides
        d = int(rng.uniform(0.012, 0.035) * SAMPLERATE)
        cents = float(rng.uniform(6, 18)) * (1 if rng.random() < 0.5 else -1)
        double = np.zeros_like(lead)
        double[d:] = pitch_shift(lead[None], cents / 100)[0][:-d]
        g = 10 ** (float(rng.uniform(-9, -4)) / 20)
        stereo += _pan(double * g, float(rng.choice((-0.7, 0.7))))
        info["double"] = {"delay_ms": round(d / SAMPLERATE * 1000, 1), "cents": round(cents, 1)}
    loud = [s for s in arr.sections if s.lead and s.energy > 0.7]
    if settings.harmonies and loud and rng.random() < 0.35:  # the same singer a third/fifth away, in the choruses
        mask = np.zeros(n_samples)
        fade = int(0.05 * SAMPLERATE)
        for sec in loud:
            a = int(sec.start_bar * arr.bar_seconds * SAMPLERATE)
            b = min(n_samples, int((sec.start_bar + sec.bars) * arr.bar_seconds * SAMPLERATE))
            if b > a:
                mask[a:b] = 1.0
                mask[a:a + fade] = np.linspace(0, 1, min(fade, b - a))
        third = 3 if arr.minor else 4
        intervals = [int(rng.choice((third, 7, -5, -8 if arr.minor else -9)))]
        if rng.random() < 0.4:
            intervals.append(int(rng.choice((7, 12, -12))))
        for k, semis in enumerate(intervals):
            harm = pitch_shift(lead[None], semis)[0] * mask * 10 ** (float(rng.uniform(-12, -6)) / 20)
            stereo += _pan(harm, (-1) ** k * float(rng.uniform(0.3, 0.8)))
        info["harmonies"] = intervals
    if np.any(backing):
        back, bchain = _track(rng, backing, "backing", beat)
        back *= active_rms(stereo) * 10 ** (rng.uniform(-14, -6) / 20) / (active_rms(back) + 1e-9)
        stereo = stereo + back
        info["backing"] = bchain
    wet, info["sends"] = sends(stereo, rng, "vocals", beat)
    return stereo + wet, used, info


# ---------------------------------------------------------------------------------------------- writing


def song_name(seed: int, index: int) -> str:
    return f"synth-{seed}-{index:04d}"


def write_song(folder: Path, stems: np.ndarray, meta: dict, fmt: str = "float", ext: str = "wav") -> Path:
    """Write mixture + stems (+ synth.json) into `folder` atomically and verify the exact sum after reading back."""
    if fmt not in FORMATS:
        raise DatasetError(f"{folder}: unknown sample format {fmt!r} (use float or pcm16).")
    if ext == "flac" and fmt != "pcm16":
        raise DatasetError(f"{folder}: FLAC stems need the pcm16 format.")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    tmp.chmod(0o755)
    try:
        if fmt == "float":
            data = {name: stems[i] for i, name in enumerate(SOURCES)}
            data["mixture"] = stems.sum(axis=0, dtype=np.float64).astype(np.float32)
            subtype = "FLOAT"
        else:
            ints = np.round(stems.astype(np.float64) * 32768.0).astype(np.int64)
            mix = ints.sum(axis=0)
            if np.abs(ints).max() > 32767 or np.abs(mix).max() > 32767:
                raise DatasetError(f"{folder}: stems exceed 16-bit range (internal error in level limiting).")
            data = {name: ints[i].astype(np.int16) for i, name in enumerate(SOURCES)}
            data["mixture"] = mix.astype(np.int16)
            subtype = "PCM_16"
        for name, wav in data.items():
            _write_audio(tmp / f"{name}.{ext}", wav, subtype, ext)
        (tmp / "synth.json").write_text(json.dumps(meta, indent=1))
        verify_exact_sum(tmp, ext)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _write_audio(path: Path, wav: np.ndarray, subtype: str, ext: str) -> None:
    """soundfile write without the float WAV PEAK chunk (it holds a timestamp: same seed must give same bytes)."""
    import soundfile as sf

    with sf.SoundFile(str(path), "w", SAMPLERATE, wav.shape[0], subtype=subtype, format=ext.upper()) as fh:
        if ext == "wav":
            sf._snd.sf_command(fh._file, 0x1050, sf._ffi.NULL, 0)  # SFC_SET_ADD_PEAK_CHUNK = false
        fh.write(np.ascontiguousarray(wav.T))


def verify_exact_sum(folder: Path, ext: str = "wav") -> None:
    """Read the files back and require mixture == drums + bass + other + vocals exactly."""
    import soundfile as sf

    dtype = "float32"
    info = sf.info(str(folder / f"mixture.{ext}"))
    if info.subtype == "PCM_16":
        dtype = "int16"
    mix, sr = sf.read(str(folder / f"mixture.{ext}"), dtype=dtype, always_2d=True)
    total = np.zeros(mix.shape, dtype=np.int64 if dtype == "int16" else np.float32)
    for name in SOURCES:
        stem, sr_s = sf.read(str(folder / f"{name}.{ext}"), dtype=dtype, always_2d=True)
        if sr_s != sr or stem.shape != mix.shape:
            raise DatasetError(f"{folder / f'{name}.{ext}'}: length or rate differs from the mixture.")
        total += stem
    if not np.array_equal(total, mix):
        raise DatasetError(f"{folder}: mixture is not exactly the sum of the stems.")


def _is_done(folder: Path, settings: SynthSettings, index: int) -> bool:
    """A finished song with the same seed, length and format is kept (lets an interrupted run resume)."""
    try:
        meta = json.loads((folder / "synth.json").read_text())
    except (OSError, ValueError):
        return False
    files = all((folder / f"{n}.{settings.ext}").is_file() for n in (*SOURCES, "mixture"))
    return files and meta.get("seed") == [settings.seed, index] and meta.get("seconds") == settings.seconds \
        and meta.get("format") == settings.fmt and meta.get("version") == GENERATOR_VERSION \
        and meta.get("subset") == settings.subset and _stored_settings(meta) == settings.production_dict()


def _stored_settings(meta: dict) -> dict | None:
    """A song's stored generator settings with the ones added since it was made at their defaults (an older
    dataset was made with those, so resuming it does not re-render every song)."""
    stored = meta.get("settings")
    if not isinstance(stored, dict):
        return None
    return {**SynthSettings().production_dict(), **stored}


def read_song_meta(folder: str | os.PathLike) -> dict:
    """A song's synth.json with every version's fields present: older songs (version 1-2, before the
    production chain) read as `production: False`, SoundFont drums and the exciter; unknown newer versions
    raise DatasetError (their fields may mean something else)."""
    path = Path(folder) / "synth.json"
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: cannot read the song's metadata ({exc}).") from None
    version = int(meta.get("version", 1))
    if version not in READABLE_VERSIONS:
        raise DatasetError(f"{path}: generator version {version} is newer than this StemGUI reads "
                           f"({', '.join(map(str, READABLE_VERSIONS))}).")
    meta["version"] = version
    if version < 3:
        old = SynthSettings(production=False, drums="soundfont", voice_air="exciter", doubling=True, harmonies=False)
        meta.setdefault("settings", old.production_dict())
        meta.setdefault("render", {"soundfont": "FluidR3_GM.sf2", "drums": "soundfont", "voice_air": "exciter"})
    meta.setdefault("vocal_phrases", [])
    meta.setdefault("instrumental", False)
    meta["settings"] = _stored_settings(meta) or {}
    return meta


def make_song(out: Path, index: int, settings: SynthSettings, clips: list[Path] | None = None,
              overwrite: bool = False) -> Path:
    """Render and write song `index` into `out/<subset>/<name>/`; skip a matching finished song."""
    folder = Path(out) / settings.subset / song_name(settings.seed, index)
    if not overwrite and _is_done(folder, settings, index):
        return folder
    stems, meta = render_song(index, settings, clips)
    return write_song(folder, stems, meta, settings.fmt, settings.ext)


def _worker(args: tuple) -> str:
    out, index, settings, overwrite = args
    return str(make_song(Path(out), index, settings, overwrite=overwrite))


def check_output_dir(out: str | os.PathLike) -> Path:
    """The dataset root must be a folder (created if missing) we can write to."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DatasetError(f"{out}: output path exists and is not a folder.")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"{out}: cannot create the output folder ({exc.strerror}).") from exc
    if not os.access(out, os.W_OK):
        raise DatasetError(f"{out}: output folder is not writable.")
    return out


def remove_stale_partials(folder: Path) -> None:
    """Delete the half-written songs (`.synth-*.tmp`, see write_song) a killed run left in `folder`."""
    for partial in folder.glob(".synth-*.tmp") if folder.is_dir() else ():
        log.info("%s: removing a half-written song from an interrupted run", partial)
        shutil.rmtree(partial, ignore_errors=True)


def synth_dataset(out: str | os.PathLike, songs: int, settings: SynthSettings, jobs: int = 1,
                  overwrite: bool = False, progress: bool = True,
                  on_song: Callable[[int, Path], None] | None = None) -> list[Path]:
    """Render `songs` songs into `out/<subset>/` with `jobs` processes; returns the song folders in order."""
    if songs < 1:
        raise DatasetError(f"{out}: --songs must be at least 1.")
    if settings.seconds < 2.0:
        raise DatasetError(f"{out}: --seconds must be at least 2.")
    if settings.subset not in ("train", "test", "valid"):
        raise DatasetError(f"{out}: subset must be train, test or valid, not {settings.subset!r}.")
    if Path(out).exists() and not Path(out).is_dir():
        raise DatasetError(f"{out}: output path exists and is not a folder.")
    settings.check()
    find_fluidsynth()
    soundfonts(settings.soundfont)
    clips = vocal_clips(settings.vocals_dir, "test" if settings.subset == "test" else "train")
    out = check_output_dir(out)  # created only once everything needed to render is there
    remove_stale_partials(out / settings.subset)
    from tqdm import tqdm

    folders: dict[int, Path] = {}
    bar = tqdm(total=songs, desc=f"synth {settings.subset}", unit="song", disable=not progress)
    try:
        if jobs <= 1:
            for i in range(songs):
                folders[i] = make_song(out, i, settings, clips, overwrite)
                bar.update(1)
                if on_song:
                    on_song(i, folders[i])
        else:
            with ProcessPoolExecutor(max_workers=jobs) as pool:
                futures = {pool.submit(_worker, (str(out), i, settings, overwrite)): i for i in range(songs)}
                try:
                    for fut in as_completed(futures):
                        i = futures[fut]
                        folders[i] = Path(fut.result())
                        bar.update(1)
                        if on_song:
                            on_song(i, folders[i])
                except BaseException:
                    for f in futures:
                        f.cancel()
                    raise
    finally:
        bar.close()
    return [folders[i] for i in range(songs)]


__all__ = [
    "SAMPLERATE", "SynthSettings", "find_fluidsynth", "find_soundfont", "soundfonts", "vocal_clips",
    "is_test_singer", "is_held_out_singer", "singer_of", "load_voice", "settings_from", "read_song_meta", "render_song", "write_song", "verify_exact_sum", "make_song", "synth_dataset",
    "song_name", "check_output_dir", "write_example", "default_vocals_dir",
]


def write_example(out_dir: str | os.PathLike, index: int, seed: int, seconds: float = 30.0) -> Path:
    """The bundled example: `example.wav` (16-bit mixture) + `example_stems/{stems,mixture}.flac`, exact sums.

    Uses held-out (test) singers. Stems are 16-bit FLAC and the mixture is their exact integer sum, so
    `example.wav` == drums + bass + other + vocals sample for sample (no extra rounding beyond 16 bits).
    """
    out_dir = check_output_dir(out_dir)
    settings = SynthSettings(seconds=seconds, seed=seed, subset="test", fmt="pcm16", ext="flac")
    stems, meta = render_song(index, settings)
    stems_dir = write_song(out_dir / "example_stems", stems, meta, "pcm16", "flac")
    mix, _ = __import__("soundfile").read(str(stems_dir / "mixture.flac"), dtype="int16", always_2d=True)
    return atomic_write(out_dir / "example.wav", lambda tmp: _write_audio(tmp, mix.T, "PCM_16", "wav"), suffix=".wav")
