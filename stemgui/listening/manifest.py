"""The prepared test: `manifest.json` in the test folder, naming every trial, condition and audio file.

`stemgui listening-test create` writes it (atomically, last, so a folder with a manifest is complete); the app
and the report read it. Conditions are identified by stable ids ("reference" is the open reference,
"hidden_reference", "anchor_3500", "system:NAME"), never by the blind letters a listener saw.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from stemgui.errors import ConfigError

MANIFEST_NAME = "manifest.json"
RESULTS_NAME = "results.sqlite"
FORMAT_VERSION = 1
HIDDEN_REFERENCE = "hidden_reference"
OPEN_REFERENCE = "reference"


def anchor_id(cutoff: float) -> str:
    return f"anchor_{int(round(cutoff))}"


def system_id(name: str) -> str:
    return f"system:{name}"


@dataclass(frozen=True)
class Condition:
    id: str
    kind: str  # "reference" (hidden), "anchor", "system"
    label: str  # what a report calls it: the system's name, "hidden reference", "anchor 3.5 kHz"
    file: str  # relative to the test folder
    objective: dict | None = None  # {"SDR": .., "SIR": .., "SAR": ..} on this excerpt, when true stems exist


@dataclass(frozen=True)
class Trial:
    id: str
    song: str
    stem: str
    start: float
    end: float
    reference: str | None  # the open reference's file (MUSHRA), relative to the test folder
    conditions: tuple[Condition, ...]
    loudness: float

    def condition(self, condition_id: str) -> Condition:
        for c in self.conditions:
            if c.id == condition_id:
                return c
        raise KeyError(condition_id)


@dataclass(frozen=True)
class Manifest:
    folder: Path
    name: str
    mode: str
    seed: int
    samplerate: int
    loudness: float
    systems: tuple[str, ...]
    stems: tuple[str, ...]
    trials: tuple[Trial, ...]
    data: dict

    def trial(self, trial_id: str) -> Trial:
        for t in self.trials:
            if t.id == trial_id:
                return t
        raise KeyError(trial_id)

    def path(self, relative: str) -> Path:
        return self.folder / relative

    @property
    def results_path(self) -> Path:
        return self.folder / RESULTS_NAME


def manifest_from_dict(data: dict, folder: Path) -> Manifest:
    trials = []
    for t in data["trials"]:
        conditions = tuple(Condition(c["id"], c["kind"], c["label"], c["file"], c.get("objective"))
                           for c in t["conditions"])
        trials.append(Trial(t["id"], t["song"], t["stem"], float(t["start"]), float(t["end"]), t.get("reference"),
                            conditions, float(t["loudness"])))
    return Manifest(folder=folder, name=data["name"], mode=data["mode"], seed=int(data["seed"]),
                    samplerate=int(data["samplerate"]), loudness=float(data["loudness"]),
                    systems=tuple(data["systems"]), stems=tuple(data["stems"]), trials=tuple(trials), data=data)


def read_manifest(path: str | Path) -> Manifest:
    """The manifest in a test folder (or the manifest file itself); ConfigError naming the file if unusable."""
    path = Path(path)
    file = path / MANIFEST_NAME if path.is_dir() else path
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{file}: no prepared listening test here (run `stemgui listening-test create` first)"
                          ) from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{file}: not a listening-test manifest ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT_VERSION:
        raise ConfigError(f"{file}: not a listening-test manifest of format {FORMAT_VERSION}")
    try:
        return manifest_from_dict(data, file.parent)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{file}: the manifest is incomplete ({exc!r})") from None
