"""The study file: a TOML grid of training runs that share one dataset, one held-out set, one budget, one seed policy.

```toml
[study]                       # what is compared and how it is scored
name = "ablation"
description = "L1 against L1 + STFT against L1 + STFT + GAN"
budget = "2 CPU cores: 9 runs x ~12 min + evaluation, about 2 hours"
baseline = "l1"               # the cell every other cell is compared with
seeds = [1, 2, 3]             # every cell is trained once per seed
heldout = "test"              # subset folder of the dataset scored after training

[synth]                       # optional: render the dataset into the study folder (`stemgui synth-dataset`)
train_songs = 24
test_songs = 8

[base]                        # the training config every run shares (the sections of `stemgui train --config`)
model = { channels = 8, depth = 4 }
train = { steps = 1500, batch_size = 4 }

[grid]                        # axes, crossed: any `section.key` with a list of values
"loss.preset" = ["l1", "l1+stft", "l1+stft+gan"]

[[variant]]                   # optional named variants (crossed with the grid), each a partial training config
name = "drnn"
model = { architecture = "drnn" }
```

A cell is one combination of variant and grid values; a run is one cell trained with one seed. Every problem is
a ConfigError of one line naming the file and the bad key.
"""

from __future__ import annotations

import itertools
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stemgui.errors import ConfigError
from stemgui.train.config import Config

STUDY_KEYS: dict[str, type | tuple[type, ...]] = {
    "name": str, "description": str, "budget": str, "baseline": str, "seeds": list, "seed_policy": str,
    "heldout": str, "heldout_tracks": int, "frames": str, "bootstrap": int, "bootstrap_seed": int,
    "device": str, "shifts": int, "compare": list,
}
REPORT_ONLY_KEYS = ("description", "budget", "compare")
"""[study] keys that change only what the report says, not what is trained or scored: a resumed study may edit them."""
SYNTH_KEYS: dict[str, type | tuple[type, ...]] = {
    "train_songs": int, "test_songs": int, "seconds": (int, float), "seed": int, "jobs": int,
}
MIR1K_KEYS: dict[str, type | tuple[type, ...]] = {
    "dataset": str, "train_singers": list, "valid_singers": list, "test_singers": list,
    "max_test_clips_per_singer": int,
}
TABLES = ("study", "synth", "mir1k", "base", "grid", "variant")
SEED_POLICIES = ("same", "offset")
"""same: a run's train.seed is its seed, so cells with the same seed see the same batches (paired runs);
offset: train.seed = seed + 1000 x cell index, independent runs."""
FRAMES = ("1s", "whole")
"""BSSEval framing of the held-out songs: SiSEC's 1 s frames, or the whole song as one frame (the MIR-1K papers)."""
SHARED_KEYS = ("train.steps", "train.minutes", "train.cpu_minutes", "train.seed", "data.dataset", "train.out",
               "train.run_dir", "train.log")
"""Settings a grid axis or variant may not change: the budget, the seed policy and the places the study owns.
Under a CPU-time budget train.steps is only a cap, so a variant may set its own (NMF fits on steps x batch
segments in one go)."""
STUDY_DATA = "data"
"""The study folder's sub-folder a [synth] or [mir1k] dataset is prepared in."""


@dataclass
class RunSpec:
    """One training run: its cell, its seed and the settings (dotted key -> value) that make it what it is."""

    name: str
    cell: str
    seed: int
    settings: dict[str, Any]
    config: Config


@dataclass
class StudyPlan:
    """Everything a study file says, checked, with the runs expanded."""

    path: Path
    name: str
    description: str
    budget_note: str
    baseline: str
    seeds: list[int]
    seed_policy: str
    heldout: str
    heldout_tracks: int
    frames: str
    bootstrap: int
    bootstrap_seed: int
    device: str
    shifts: int
    synth: dict[str, Any] | None
    mir1k: dict[str, Any] | None
    base: Config
    axes: list[tuple[str, list[Any]]]
    cells: list[str]
    runs: list[RunSpec] = field(default_factory=list)
    compare: list[tuple[str, str]] = field(default_factory=list)
    """Pairs of cells (system, reference) compared besides every cell against the baseline: a chain of additions
    (l1 -> l1+stft -> l1+stft+gan) asks what each step adds, not only what all of them add together."""

    def cell_pairs(self) -> list[tuple[str, str]]:
        """Every compared (cell, reference) pair: each other cell against the baseline, then study.compare's."""
        return [(cell, self.baseline) for cell in self.cells if cell != self.baseline] + list(self.compare)

    @property
    def budget_kind(self) -> str:
        """"cpu" (train.cpu_minutes), "wall" (train.minutes) or "steps" (train.steps)."""
        t = self.base.train
        return "cpu" if t.cpu_minutes > 0 else "wall" if t.minutes > 0 else "steps"

    def budget_text(self) -> str:
        t = self.base.train
        if self.budget_kind == "cpu":
            return f"{t.cpu_minutes:g} CPU-minutes of training per run (at most {t.steps} steps)"
        if self.budget_kind == "wall":
            return f"about {t.minutes:g} wall-clock minutes of training per run (at most {t.steps} steps)"
        return f"{t.steps} training steps per run"

    def prepared_dataset(self, folder: Path) -> bool:
        """Whether the study prepares its own dataset in `folder/data` ([synth] or [mir1k])."""
        return self.synth is not None or self.mir1k is not None

    def dataset(self, folder: Path) -> Path:
        return folder / STUDY_DATA if self.prepared_dataset(folder) else Path(self.base.data.dataset)

    def run_config(self, run: RunSpec, folder: Path) -> Config:
        """The run's complete training config, with the study's dataset and the run's own folder."""
        cfg = run.config.copy()
        cfg.data.dataset = str(self.dataset(folder))
        run_folder = folder / "runs" / run.name
        cfg.train.out = str(run_folder / f"{run.name}.safetensors")
        cfg.train.run_dir = str(run_folder / "train")
        cfg.train.log = str(run_folder / "train" / "log.jsonl")
        cfg.train.progress = False  # the study draws one bar over all runs
        return cfg


def load_study(path: str | Path) -> StudyPlan:
    """Read and check a study file; raises ConfigError with one line naming the file and the bad key."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: study file not found")
    try:
        doc = tomllib.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{p}: cannot parse the study file ({str(exc).splitlines()[0]})") from None
    return plan_from_dict(doc, p)


def plan_from_dict(doc: dict[str, Any], path: Path) -> StudyPlan:
    unknown = [k for k in doc if k not in TABLES]
    if unknown:
        raise ConfigError(f"{path}: unknown table [{unknown[0]}] (known: {', '.join(TABLES)})")
    study = _table(doc, "study", path)
    _check_keys(study, STUDY_KEYS, "study", path)
    synth = _table(doc, "synth", path) if "synth" in doc else None
    if synth is not None:
        _check_keys(synth, SYNTH_KEYS, "synth", path)
    mir1k = _table(doc, "mir1k", path) if "mir1k" in doc else None
    if mir1k is not None:
        _check_keys(mir1k, MIR1K_KEYS, "mir1k", path)
        if synth is not None:
            raise ConfigError(f"{path}: [synth] and [mir1k] both prepare the dataset; keep one")
        if not mir1k.get("dataset") or not mir1k.get("train_singers"):
            raise ConfigError(f"{path}: [mir1k] needs dataset and train_singers")

    base_doc = _table(doc, "base", path) if "base" in doc else {}
    base = Config.from_dict(base_doc, where=f"{path}: [base]")
    if mir1k is not None:
        base.data.format, base.data.valid_subset = "mir1k", "valid" if mir1k.get("valid_singers") else ""
    elif base.data.dataset and not Path(base.data.dataset).is_absolute():
        base.data.dataset = str((path.parent / base.data.dataset).resolve())  # relative to the study file
    if synth is None and mir1k is None and not base.data.dataset:
        raise ConfigError(f"{path}: no dataset: set base.data.dataset, or add a [synth] or [mir1k] table")

    shared = tuple(k for k in SHARED_KEYS if not (k == "train.steps" and base.train.cpu_minutes > 0))
    axes = _axes(doc.get("grid", {}), path, shared)
    variants = _variants(doc.get("variant", []), path, shared)
    seeds = study.get("seeds", [base.train.seed])
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise ConfigError(f"{path}: study.seeds must be a non-empty list of integers >= 0, not {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{path}: study.seeds has duplicates: {seeds}")
    policy = study.get("seed_policy", "same")
    _choice(policy, SEED_POLICIES, "study.seed_policy", path)
    frames = study.get("frames", "1s")
    _choice(frames, FRAMES, "study.frames", path)
    bootstrap = study.get("bootstrap", 10000)
    if bootstrap < 100:
        raise ConfigError(f"{path}: study.bootstrap must be at least 100 resamples, not {bootstrap}")
    if study.get("heldout_tracks", 0) < 0:
        raise ConfigError(f"{path}: study.heldout_tracks must be >= 0 (0 = every held-out song)")

    cells: list[str] = []
    runs: list[RunSpec] = []
    for variant_name, variant_doc in variants:
        for values in itertools.product(*(v for _, v in axes)):
            labels = ([variant_name] if variant_name else []) + [_label(k, v) for (k, _), v in zip(axes, values)]
            cell = _safe("_".join(labels) or "run")
            if cell in cells:
                raise ConfigError(f"{path}: two runs would both be named '{cell}'; give the variants distinct names")
            cells.append(cell)
            for seed in seeds:
                name = cell if len(seeds) == 1 else f"{cell}_seed{seed}"
                cfg = base.copy()
                where = f"{path}: run '{name}'"
                if variant_doc:
                    cfg.update(variant_doc, where=f"{path}: [[variant]] '{variant_name}'")
                settings: dict[str, Any] = {f"{s}.{k}": v for s, table in variant_doc.items() for k, v in table.items()}
                for (key, _), value in zip(axes, values):
                    cfg.set(key, value, where=f"{path}: [grid]")
                    settings[key] = value
                cfg.train.seed = seed if policy == "same" else seed + 1000 * (len(cells) - 1)
                settings["train.seed"] = cfg.train.seed
                if not cfg.data.dataset:
                    cfg.data.dataset = STUDY_DATA  # placeholder until the folder is known: validate() wants one
                try:
                    cfg.validate()
                except ConfigError as exc:
                    raise ConfigError(f"{where}: {exc}") from None
                runs.append(RunSpec(name, cell, cfg.train.seed if policy == "same" else seed, settings, cfg))

    baseline = study.get("baseline", cells[0])
    if baseline not in cells:
        raise ConfigError(f"{path}: study.baseline '{baseline}' is not one of the cells ({', '.join(cells)})")
    compare = _pairs(study.get("compare", []), cells, baseline, path)
    return StudyPlan(
        path=path, name=_safe(study.get("name", path.stem)), description=study.get("description", ""),
        budget_note=study.get("budget", ""), baseline=baseline, seeds=list(seeds), seed_policy=policy,
        heldout=study.get("heldout", "test"), heldout_tracks=int(study.get("heldout_tracks", 0)), frames=frames,
        bootstrap=int(bootstrap), bootstrap_seed=int(study.get("bootstrap_seed", 0)),
        device=study.get("device", "cpu"), shifts=int(study.get("shifts", 0)), synth=synth, mir1k=mir1k,
        base=base, axes=axes, cells=cells, runs=runs, compare=compare,
    )


# ---------------------------------------------------------------------------------------------------- helpers
def _table(doc: dict[str, Any], name: str, path: Path) -> dict[str, Any]:
    value = doc.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: [{name}] must be a table")
    return value


def _check_keys(table: dict[str, Any], known: dict[str, type | tuple[type, ...]], name: str, path: Path) -> None:
    for key, value in table.items():
        if key not in known:
            raise ConfigError(f"{path}: unknown key '{name}.{key}' (known in [{name}]: {', '.join(known)})")
        kind = known[key]
        if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
            wanted = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise ConfigError(f"{path}: '{name}.{key}' must be a {wanted}, not {value!r}")


def _choice(value: str, choices: tuple[str, ...], key: str, path: Path) -> None:
    if value not in choices:
        raise ConfigError(f"{path}: {key} must be one of {', '.join(choices)}, not '{value}'")


def _pairs(items: list[Any], cells: list[str], baseline: str, path: Path) -> list[tuple[str, str]]:
    """study.compare: a list of [system, reference] cell pairs, each two different cells, the baseline pairs
    excluded (those are compared anyway)."""
    pairs: list[tuple[str, str]] = []
    for item in items:
        if not (isinstance(item, list) and len(item) == 2 and all(isinstance(c, str) for c in item)):
            raise ConfigError(f"{path}: study.compare must list [system, reference] pairs of cell names, not {item!r}")
        for cell in item:
            if cell not in cells:
                raise ConfigError(f"{path}: study.compare names '{cell}', which is not one of the cells "
                                  f"({', '.join(cells)})")
        system, reference = item
        if system == reference:
            raise ConfigError(f"{path}: study.compare pairs '{system}' with itself")
        if reference == baseline or (system, reference) in pairs:
            continue
        pairs.append((system, reference))
    return pairs


def _axes(grid: Any, path: Path, shared: tuple[str, ...] = SHARED_KEYS) -> list[tuple[str, list[Any]]]:
    """[grid] as (dotted key, values) in file order; `loss.preset = [...]` and `"loss.preset" = [...]` alike."""
    if not isinstance(grid, dict):
        raise ConfigError(f"{path}: [grid] must be a table of section.key = [values]")
    axes: list[tuple[str, list[Any]]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
            return
        if not isinstance(value, list) or not value:
            raise ConfigError(f"{path}: grid '{prefix}' must be a non-empty list of values")
        probe = Config()
        probe.set(prefix, value[0], where=f"{path}: [grid]")  # an unknown key is one line naming it
        if prefix in shared:
            raise ConfigError(f"{path}: grid '{prefix}' cannot vary: the budget, seeds and dataset are shared by "
                              "every run (set it in [base] or [study])")
        axes.append((prefix, value))

    walk("", grid)
    return axes


def _variants(items: Any, path: Path, shared: tuple[str, ...] = SHARED_KEYS) -> list[tuple[str, dict[str, Any]]]:
    """[[variant]] tables as (name, partial config); one nameless empty variant when there are none."""
    if not items:
        return [("", {})]
    if not isinstance(items, list) or not all(isinstance(v, dict) for v in items):
        raise ConfigError(f"{path}: [[variant]] must be an array of tables")
    out: list[tuple[str, dict[str, Any]]] = []
    for index, item in enumerate(items):
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{path}: [[variant]] number {index + 1} needs a name")
        sections = {k: v for k, v in item.items() if k != "name"}
        probe = Config()
        probe.update(sections, where=f"{path}: [[variant]] '{name}'")
        for section, table in sections.items():
            for key in table:
                if f"{section}.{key}" in shared:
                    raise ConfigError(f"{path}: [[variant]] '{name}' cannot set '{section}.{key}': the budget, "
                                      "seeds and dataset are shared by every run")
        out.append((_safe(name), sections))
    return out


def _label(key: str, value: Any) -> str:
    """How a grid value names a cell: strings as themselves, anything else as leaf=value."""
    if isinstance(value, str):
        return value
    leaf = key.split(".")[-1]
    if isinstance(value, bool):
        return f"{leaf}={'on' if value else 'off'}"
    if isinstance(value, (dict, list)):
        return f"{leaf}={re.sub(r'[^A-Za-z0-9.+-]+', '-', str(value)).strip('-')}"
    return f"{leaf}={value:g}" if isinstance(value, float) else f"{leaf}={value}"


def _safe(text: str) -> str:
    """A folder-safe, registry-safe name (no path separators)."""
    return re.sub(r"[^A-Za-z0-9._+=-]+", "_", str(text)).strip("_") or "run"
