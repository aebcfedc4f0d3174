"""The TOML definition of a listening test: songs, excerpts, stems to rate, systems under test, mode.

Read once by `stemgui listening-test create`; every problem is refused in one line naming the file and the
key (`example.toml: songs[0].excerpts[1]: end 9.0 s is before start 12.0 s`) before any audio work starts.
Relative paths are relative to the config file's folder. Example:

    [test]
    name = "bundled model vs oracle"
    mode = "mushra"            # or "mos" (ITU-T P.800 ACR, 1-5)
    seed = 1
    stems = ["vocals", "drums"]
    loudness = -23.0           # LUFS every condition is matched to (ITU-R BS.1770-4)
    anchors = [3500, 7000]     # low-pass anchors in Hz (BS.1534-3: 3.5 kHz, optional 7 kHz mid anchor)
    objective = true           # BSSEval SDR/SIR/SAR of every system on every excerpt (needs true stems)

    [[songs]]
    name = "example"
    mix = "../examples/example.wav"
    stems = "../examples/example_stems"   # true stems: the reference (required for MUSHRA)
    excerpts = [[2.0, 10.0], [14.0, 22.0]]

    [[systems]]
    name = "bundled"
    model = "default"          # a registry name or a .safetensors path (relative: to this file)
    [[systems]]
    name = "oracle-IRM"
    oracle = "irm"             # irm | ibm | mix, computed from the true stems
    [[systems]]
    name = "other-tool"
    folder = "other/{song}"    # stems folder written by another tool, {song} = the song's name
"""

from __future__ import annotations

import logging
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from stemgui import SOURCES
from stemgui.errors import ConfigError

log = logging.getLogger(__name__)

MODES = ("mushra", "mos")
ORACLES = ("irm", "ibm", "mix")
RECOMMENDED_EXCERPT = (5.0, 12.0)
"""BS.1534-3 asks for excerpts of about 10 s (5-12 s here); shorter ones are allowed with a warning."""
MIN_EXCERPT = 0.5
"""BS.1770 gating needs 400 ms blocks: an excerpt must be at least this long."""
DEFAULT_LOUDNESS = -23.0
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


@dataclass(frozen=True)
class Song:
    name: str
    mix: Path
    stems: Path | None
    excerpts: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class System:
    """One system under test: exactly one of `model`, `oracle`, `folder` is set."""

    name: str
    model: str | None = None
    oracle: str | None = None
    folder: str | None = None

    @property
    def kind(self) -> str:
        return "model" if self.model else ("oracle" if self.oracle else "folder")

    def folder_for(self, song: str, base: Path) -> Path:
        path = Path(str(self.folder).replace("{song}", song))
        return path if path.is_absolute() else base / path


@dataclass(frozen=True)
class TestConfig:
    path: Path
    name: str
    mode: str
    seed: int
    stems: tuple[str, ...]
    loudness: float
    anchors: tuple[float, ...]
    samplerate: int
    fade: float
    folder: Path
    songs: tuple[Song, ...]
    systems: tuple[System, ...] = field(default_factory=tuple)
    device: str = "cpu"
    objective: bool = True

    @property
    def base(self) -> Path:
        return self.path.parent


class _Reader:
    """Typed access to one TOML table with errors that name the file and the dotted key."""

    def __init__(self, path: Path, table: dict, prefix: str):
        self.path, self.table, self.prefix = path, table, prefix

    def fail(self, key: str, problem: str) -> ConfigError:
        where = f"{self.prefix}.{key}" if self.prefix else key
        return ConfigError(f"{self.path}: {where}: {problem}")

    def get(self, key: str, kind, default=None, required: bool = False):
        if key not in self.table:
            if required:
                raise self.fail(key, "missing")
            return default
        value = self.table[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            raise self.fail(key, f"expected {' or '.join(k.__name__ for k in kinds)}, got {value!r}")
        if not isinstance(value, kinds):
            raise self.fail(key, f"expected {' or '.join(k.__name__ for k in kinds)}, got {value!r}")
        return value

    def unknown(self, known: set[str]) -> None:
        extra = sorted(set(self.table) - known)
        if extra:
            raise self.fail(extra[0], f"unknown key (expected one of {', '.join(sorted(known))})")


def _tables(top: "_Reader", path: Path, key: str, allowed: set[str]):
    """Each `[[key]]` table of the file as a _Reader (unknown keys refused); there must be at least one."""
    raw_tables = top.get(key, list, required=True)
    if not raw_tables:
        raise top.fail(key, f"needs at least one [[{key}]] table")
    for i, raw in enumerate(raw_tables):
        r = _Reader(path, raw if isinstance(raw, dict) else {}, f"{key}[{i}]")
        if not isinstance(raw, dict):
            raise r.fail("", "expected a table")
        r.unknown(allowed)
        yield r


def _unique_name(r: "_Reader", taken: set[str], what: str) -> str:
    name = _name(r)
    if name in taken:
        raise r.fail("name", f"'{name}' is used by another {what}")
    return name


def _name(reader: _Reader, key: str = "name") -> str:
    name = reader.get(key, str, required=True)
    if not SAFE_NAME.match(name):
        raise reader.fail(key, f"'{name}' must be letters, digits, '.', '_', '+' or '-' (it names files)")
    return name


def _resolve(base: Path, text: str) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() else (base / path)


def _excerpts(reader: _Reader) -> tuple[tuple[float, float], ...]:
    raw = reader.get("excerpts", list, required=True)
    if not raw:
        raise reader.fail("excerpts", "needs at least one [start, end] pair in seconds")
    out = []
    for i, pair in enumerate(raw):
        key = f"excerpts[{i}]"
        if (not isinstance(pair, list) or len(pair) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pair)):
            raise reader.fail(key, f"expected [start, end] in seconds, got {pair!r}")
        start, end = float(pair[0]), float(pair[1])
        if start < 0 or not math.isfinite(start) or not math.isfinite(end):
            raise reader.fail(key, f"start must be a finite time >= 0, got {pair!r}")
        if end - start < MIN_EXCERPT:
            raise reader.fail(key, f"end {end:g} s must be at least {MIN_EXCERPT:g} s after start {start:g} s")
        lo, hi = RECOMMENDED_EXCERPT
        if not lo <= end - start <= hi:
            log.warning("%s: %s.%s lasts %.1f s; BS.1534-3 recommends %g-%g s", reader.path, reader.prefix, key,
                        end - start, lo, hi)
        out.append((start, end))
    return tuple(out)


def parse_config(data: dict, path: Path) -> TestConfig:
    """Validate the parsed TOML `data` of the file `path`."""
    top = _Reader(path, data, "")
    top.unknown({"test", "songs", "systems"})
    test = _Reader(path, top.get("test", dict, required=True), "test")
    test.unknown({"name", "mode", "seed", "stems", "loudness", "anchors", "samplerate", "fade", "folder", "device",
                  "objective"})
    name = test.get("name", str, required=True).strip()
    if not name:
        raise test.fail("name", "must not be empty")
    mode = test.get("mode", str, "mushra").lower()
    if mode not in MODES:
        raise test.fail("mode", f"'{mode}' is not one of {', '.join(MODES)}")
    seed = test.get("seed", int, 0)
    stems = test.get("stems", list, list(SOURCES))
    if not stems or not all(isinstance(s, str) for s in stems):
        raise test.fail("stems", f"expected a non-empty list of stem names, got {stems!r}")
    for s in stems:
        if s not in SOURCES:
            raise test.fail("stems", f"'{s}' is not a stem (expected {', '.join(SOURCES)})")
    if len(set(stems)) != len(stems):
        raise test.fail("stems", "lists a stem twice")
    loudness = float(test.get("loudness", (int, float), DEFAULT_LOUDNESS))
    if not -60.0 <= loudness <= -6.0:
        raise test.fail("loudness", f"{loudness:g} LUFS is outside -60..-6")
    anchors = test.get("anchors", list, [3500, 7000] if mode == "mushra" else [])
    if not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in anchors):
        raise test.fail("anchors", f"expected cutoff frequencies in Hz, got {anchors!r}")
    samplerate = test.get("samplerate", int, 44100)
    if not 8000 <= samplerate <= 192000:
        raise test.fail("samplerate", f"{samplerate} Hz is outside 8000..192000")
    for a in anchors:
        if not 500 <= a < samplerate / 2:
            raise test.fail("anchors", f"cutoff {a:g} Hz must be between 500 Hz and half the sample rate")
    if mode == "mushra" and 3500 not in [int(a) for a in anchors]:
        log.warning("%s: test.anchors has no 3500 Hz low-pass anchor, which BS.1534-3 requires", path)
    fade = float(test.get("fade", (int, float), 0.02))
    if not 0.0 <= fade <= 0.5:
        raise test.fail("fade", f"{fade:g} s is outside 0..0.5")
    folder = _resolve(path.parent, test.get("folder", str, path.stem))
    device = test.get("device", str, "cpu")
    objective = test.get("objective", bool, True)

    songs: list[Song] = []
    for r in _tables(top, path, "songs", {"name", "mix", "stems", "excerpts"}):
        song_name = _unique_name(r, {s.name for s in songs}, "song")
        mix = _resolve(path.parent, r.get("mix", str, required=True))
        if not mix.is_file():
            raise r.fail("mix", f"{mix} does not exist")
        stems_text = r.get("stems", str)
        stems_dir = _resolve(path.parent, stems_text) if stems_text else None
        if stems_dir is not None and not stems_dir.is_dir():
            raise r.fail("stems", f"{stems_dir} is not a folder")
        if stems_dir is None and mode == "mushra":
            raise r.fail("stems", "MUSHRA needs the true stems as its reference (or use mode = \"mos\")")
        songs.append(Song(song_name, mix, stems_dir, _excerpts(r)))

    from stemgui.models.registry import names_a_file  # here: the registry imports torch

    systems: list[System] = []
    for r in _tables(top, path, "systems", {"name", "model", "oracle", "folder"}):
        sys_name = _unique_name(r, {s.name for s in systems}, "system")
        given = {k: r.get(k, str) for k in ("model", "oracle", "folder")}
        chosen = [k for k, v in given.items() if v]
        if len(chosen) != 1:
            raise r.fail("name", f"system '{sys_name}' needs exactly one of model, oracle or folder")
        if given["oracle"] and given["oracle"] not in ORACLES:
            raise r.fail("oracle", f"'{given['oracle']}' is not one of {', '.join(ORACLES)}")
        if given["model"] and names_a_file(given["model"]):  # a path, not a registry name: from the config
            given["model"] = str(_resolve(path.parent, given["model"]))
            if not Path(given["model"]).is_file():
                raise r.fail("model", f"{given['model']} not found")
        system = System(sys_name, **given)
        if system.kind == "oracle":
            missing = [s.name for s in songs if s.stems is None]
            if missing:
                raise r.fail("oracle", f"needs true stems, which song '{missing[0]}' has none of")
        systems.append(system)
    return TestConfig(path=path, name=name, mode=mode, seed=seed, stems=tuple(stems), loudness=loudness,
                      anchors=tuple(float(a) for a in anchors), samplerate=samplerate, fade=fade, folder=folder,
                      songs=tuple(songs), systems=tuple(systems), device=device,
                      objective=objective)


def load_config(path: str | Path) -> TestConfig:
    """Read and validate a test definition; ConfigError (one line, file and key) on any problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read ({exc})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    return parse_config(data, path.resolve())
