"""Recorded drum kits (Hydrogen's `drumkit.xml` kits, Debian's `hydrogen-drumkits`) played from GM drum notes.

Why: General MIDI SoundFont kits are one or two samples per piece; a real kit has a velocity layer per
dynamic, several microphones and a room. Here each GM note of an arrangement's drum part picks the kit
piece named like it, the layer whose velocity range holds the hit (round robin among equal layers), the
kit's own gain and pan, and a little extra timing/velocity humanisation; open hi-hats are choked by the
next closed or pedal hit. The close-miked sum then gets overheads (high-passed, widened, a few ms late)
and a short stereo room, as a drum stem of a produced song has. Nothing here needs Hydrogen itself.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stemgui.data.midi import Note

log = logging.getLogger(__name__)

DRUMKIT_DIRS = ("/usr/share/hydrogen/data/drumkits",)
MAX_SAMPLE_SECONDS = 4.0  # long cymbal/hat samples are faded out here (they sit under the next hits anyway)

# GM note -> name patterns tried in order (first kit piece whose name matches wins), then fallback notes.
GM_PIECES: dict[int, tuple[tuple[str, ...], tuple[int, ...]]] = {
    36: ((r"kick", r"bass ?drum", r"\bbd\b"), ()),
    38: ((r"^(?!.*(rim|roll|stick|brush)).*snare",), ()),
    37: ((r"side ?stick", r"rim ?click", r"\bstick\b", r"rim"), (38,)),
    39: ((r"clap",), (38,)),
    42: ((r"(closed|clsd).*(hat|hh)", r"(hat|hh).*(closed|clsd)", r"^(?!.*(open|pedal|semi)).*(hi.?hat|\bhh\b)"), ()),
    44: ((r"pedal.*(hat|hh)", r"(hat|hh).*pedal"), (42,)),
    46: ((r"open.*(hat|hh)", r"(hat|hh).*open"), (42,)),
    49: ((r"^(?!.*(ride|bell)).*crash", r"crash", r"splash|china"), (46,)),
    57: ((r"crash", r"splash|china"), (49,)),
    51: ((r"^(?!.*bell).*ride", r"ride"), (42,)),
    54: ((r"tamb",), (42,)),
    70: ((r"maraca|shaker",), (42,)),
}
TOM_NOTES = (41, 43, 45, 47, 48, 50)  # low floor ... high tom
REQUIRED = (36, 38, 42)  # a kit without kick, snare and a hi-hat does not play these patterns


@dataclass(frozen=True)
class Layer:
    path: Path
    vmin: float
    vmax: float
    gain: float


@dataclass(frozen=True)
class Piece:
    name: str
    gain: float
    pan_l: float
    pan_r: float
    layers: tuple[Layer, ...]


@dataclass(frozen=True)
class Kit:
    name: str
    folder: Path
    pieces: dict[int, Piece]  # GM note -> piece


def drumkit_dirs() -> list[Path]:
    """Where kits are looked for: $STEMGUI_DRUMKITS (os.pathsep-separated) or Debian's folder."""
    env = os.environ.get("STEMGUI_DRUMKITS")
    return [Path(p) for p in (env.split(os.pathsep) if env is not None else DRUMKIT_DIRS) if p]


def _text(node: ET.Element, tag: str, default: str = "") -> str:
    child = node.find(tag)
    return child.text.strip() if child is not None and child.text else default


def _float(node: ET.Element, tag: str, default: float) -> float:
    try:
        return float(_text(node, tag, str(default)))
    except ValueError:
        return default


def _strip_namespaces(root: ET.Element) -> ET.Element:
    for el in root.iter():
        if isinstance(el.tag, str) and "}" in el.tag:
            el.tag = el.tag.split("}", 1)[1]
    return root


def _pieces(folder: Path, root: ET.Element) -> list[Piece]:
    out = []
    for inst in root.iter("instrument"):
        name = _text(inst, "name")
        layers = []
        for layer in inst.iter("layer"):
            path = folder / _text(layer, "filename")
            if path.is_file():
                layers.append(Layer(path, _float(layer, "min", 0.0), _float(layer, "max", 1.0), _float(layer, "gain", 1.0)))
        single = _text(inst, "filename")
        if not layers and single and (folder / single).is_file():
            layers.append(Layer(folder / single, 0.0, 1.0, 1.0))
        if name and layers:
            gain = _float(inst, "volume", 1.0) * _float(inst, "gain", 1.0)
            out.append(Piece(name, gain, _float(inst, "pan_L", 1.0), _float(inst, "pan_R", 1.0), tuple(layers)))
    return out


def _assign(pieces: list[Piece]) -> dict[int, Piece]:
    """GM note -> kit piece by name; toms spread from low to high."""
    mapping: dict[int, Piece] = {}
    for note, (patterns, _) in GM_PIECES.items():
        for pattern in patterns:
            hit = next((p for p in pieces if re.search(pattern, p.name, re.IGNORECASE)), None)
            if hit is not None:
                mapping[note] = hit
                break
    toms = [p for p in pieces if re.search(r"\btom", p.name, re.IGNORECASE)]

    def height(p: Piece) -> int:
        n = p.name.lower()
        return 0 if "floor" in n else 1 if "low" in n else 3 if re.search(r"hi|high", n) else 2
    toms.sort(key=height)
    if toms:
        for k, note in enumerate(TOM_NOTES):
            mapping[note] = toms[min(len(toms) - 1, k * len(toms) // len(TOM_NOTES))]
    for note, (_, fallbacks) in GM_PIECES.items():
        if note not in mapping:
            for fb in fallbacks:
                if fb in mapping:
                    mapping[note] = mapping[fb]
                    break
    return mapping


@functools.lru_cache(maxsize=64)
def load_kit(folder: str) -> Kit | None:
    """The kit in `folder` (its drumkit.xml), or None when it cannot play a kick/snare/hi-hat pattern."""
    path = Path(folder) / "drumkit.xml"
    try:
        root = _strip_namespaces(ET.parse(path).getroot())
    except (OSError, ET.ParseError) as exc:
        log.info("%s: skipped (%s)", path, exc)
        return None
    mapping = _assign(_pieces(Path(folder), root))
    if not all(n in mapping for n in REQUIRED):
        return None
    return Kit(_text(root, "name", Path(folder).name), Path(folder), mapping)


def find_kits() -> list[Kit]:
    """Every usable recorded kit, sorted by folder name (a stable order: the seed picks by index)."""
    kits = []
    for base in drumkit_dirs():
        if not base.is_dir():
            continue
        for folder in sorted(p for p in base.iterdir() if (p / "drumkit.xml").is_file()):
            kit = load_kit(str(folder))
            if kit is not None:
                kits.append(kit)
    return kits


@functools.lru_cache(maxsize=512)
def _sample(path: Path, samplerate: int) -> np.ndarray:
    """A kit sample as (2, n) float32 at `samplerate`, at most MAX_SAMPLE_SECONDS (faded)."""
    import soundfile as sf

    from stemgui.audio import resample

    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    data = data[: int(MAX_SAMPLE_SECONDS * rate)].T
    if data.shape[0] == 1:
        data = np.repeat(data, 2, axis=0)
    data = data[:2]
    if rate != samplerate:
        data = resample(np.ascontiguousarray(data), rate, samplerate)
    fade = min(data.shape[1], int(0.05 * samplerate))
    if data.shape[1] >= int(MAX_SAMPLE_SECONDS * samplerate) - 1 and fade:
        data[:, -fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    return np.ascontiguousarray(data, dtype=np.float32)


def _layer(piece: Piece, velocity: float, rng: np.random.Generator) -> Layer:
    fits = [lay for lay in piece.layers if lay.vmin - 1e-6 <= velocity <= lay.vmax + 1e-6]
    if not fits:
        fits = [min(piece.layers, key=lambda lay: min(abs(velocity - lay.vmin), abs(velocity - lay.vmax)))]
    return fits[int(rng.integers(len(fits)))]


def render_kit(kit: Kit, notes: list[Note], n_samples: int, rng: np.random.Generator, samplerate: int = 44100,
               humanize: float = 1.0) -> np.ndarray:
    """The dry close-mic kit for `notes` (GM drum notes), (2, n_samples) float64."""
    out = np.zeros((2, n_samples), dtype=np.float64)
    chokes = sorted(n.start for n in notes if n.pitch in (42, 44))
    # a stereo drummer's-view placement per piece: hats left, floor tom right, kick and snare centre
    place = {36: 0.0, 38: -0.05, 37: -0.05, 39: 0.0, 42: -0.35, 44: -0.35, 46: -0.35, 49: -0.45, 57: 0.45,
             51: 0.4, 54: 0.25, 70: 0.3, 41: 0.45, 43: 0.35, 45: 0.1, 47: 0.0, 48: -0.1, 50: -0.2}
    spread = float(rng.uniform(0.4, 1.0))
    for n in notes:
        piece = kit.pieces.get(n.pitch)
        if piece is None:
            continue
        vel = float(np.clip(n.velocity / 127.0 + rng.normal(0.0, 0.03 * humanize), 0.05, 1.0))
        layer = _layer(piece, vel, rng)
        wav = _sample(layer.path, samplerate)
        start = int(round((n.start + rng.normal(0.0, 0.002 * humanize)) * samplerate))
        start = max(0, start)
        if start >= n_samples:
            continue
        length = min(wav.shape[1], n_samples - start)
        if n.pitch == 46:  # an open hat rings until the next closed/pedal hit
            nxt = next((t for t in chokes if t > n.start + 0.02), None)
            if nxt is not None:
                length = min(length, max(1, int((nxt - n.start) * samplerate)))
        seg = wav[:, :length].astype(np.float64)
        if n.pitch == 46 and length < wav.shape[1]:
            fade = min(length, int(0.015 * samplerate))
            seg[:, -fade:] *= np.linspace(1.0, 0.0, fade)
        # Hydrogen scales a layer by velocity too; a power curve keeps soft hits audible but darker layers
        gain = piece.gain * layer.gain * vel ** 1.3
        pan = place.get(n.pitch, 0.0) * spread
        theta = (pan + 1) * np.pi / 4
        out[0, start:start + length] += gain * piece.pan_l * np.cos(theta) * np.sqrt(2) * seg[0]
        out[1, start:start + length] += gain * piece.pan_r * np.sin(theta) * np.sqrt(2) * seg[1]
    return out


def room_ir(rng: np.random.Generator, samplerate: int, seconds: float) -> np.ndarray:
    """A small room: sparse early reflections then a decaying, darkening noise tail; (2, n), unit energy."""
    from scipy.signal import lfilter

    n = int(seconds * samplerate)
    ir = np.zeros((2, n))
    for ch in range(2):
        taps = np.sort(rng.uniform(0.002, 0.03, 10))
        ir[ch, (taps * samplerate).astype(int)] = rng.uniform(0.3, 1.0, taps.size) * rng.choice((-1, 1), taps.size)
    t = np.arange(n) / samplerate
    tail = lfilter([0.35], [1, -0.65], rng.standard_normal((2, n)), axis=1) * np.exp(-6.91 * t / seconds)
    ir += 0.5 * tail * (t > 0.01)
    return ir / np.sqrt((ir ** 2).sum(axis=1, keepdims=True) + 1e-12)


def kit_ambience(close: np.ndarray, rng: np.random.Generator, samplerate: int = 44100) -> tuple[np.ndarray, dict]:
    """Close mics + overheads + room, as one stereo drum stem; returns it and the settings drawn."""
    import scipy.fft
    from scipy.signal import butter, sosfilt

    oh_db, room_db = float(rng.uniform(-10.0, -3.0)), float(rng.uniform(-16.0, -6.0))
    delay = int(rng.uniform(0.002, 0.005) * samplerate)
    overhead = sosfilt(butter(2, float(rng.uniform(300, 900)), "highpass", fs=samplerate, output="sos"), close)
    mid, side = overhead.mean(axis=0), (overhead[0] - overhead[1]) * 0.5 * float(rng.uniform(1.2, 2.0))
    overhead = np.stack([mid + side, mid - side])
    overhead = np.pad(overhead, ((0, 0), (delay, 0)))[:, : close.shape[1]]
    rt = float(rng.uniform(0.25, 0.9))
    ir = room_ir(rng, samplerate, rt)
    size = scipy.fft.next_fast_len(close.shape[1] + ir.shape[1], real=True)
    mono = close.mean(axis=0)
    room = scipy.fft.irfft(scipy.fft.rfft(mono, n=size)[None] * scipy.fft.rfft(ir, n=size, axis=1), n=size,
                           axis=1)[:, : close.shape[1]]
    level = np.sqrt(np.mean(close ** 2)) + 1e-12
    out = close + overhead * (level / (np.sqrt(np.mean(overhead ** 2)) + 1e-12)) * 10 ** (oh_db / 20) \
        + room * (level / (np.sqrt(np.mean(room ** 2)) + 1e-12)) * 10 ** (room_db / 20)
    return out, {"overheads_db": round(oh_db, 2), "room_db": round(room_db, 2), "room_rt60": round(rt, 3)}
