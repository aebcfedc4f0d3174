"""Every training knob, named, typed and validated in one place.

A config is nested dataclasses (data, augment, model, loss, discriminator, optim, finetune, train) so that a TOML
or YAML file, `--set section.key=value` overrides and the GUI fine-tune panel all speak the same names, and a
checkpoint can store the exact config that produced it. Bad values raise ConfigError with one sentence naming
the setting.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stemgui import SOURCES
from stemgui.errors import ConfigError
from stemgui.refine import REFINE_MODES
from stemgui.train.schedule import LR_DECAYS, learning_rate

PRESETS = ("l1", "l1+stft", "l1+stft+gan", "drnn", "unet")
SPECTRAL_PRESETS = ("drnn", "unet")  # losses on |STFT| of the estimates at the model's own front end
DIVERGENCES = ("mse", "kl")
DATA_FORMATS = ("auto", "musdb", "stem-mp4", "mir1k", "folder")
DISCRIMINATOR_KINDS = ("stylemelgan", "mrsd", "both")
AMP_MODES = ("auto", "off", "bf16", "fp16")


@dataclass
class DataConfig:
    """Where the multitracks are and how segments are cut from them."""

    dataset: str = ""
    format: str = "auto"
    sources: list[str] = field(default_factory=lambda: list(SOURCES))
    stem_map: dict[str, str] = field(default_factory=dict)  # format=folder: source -> file name in a track
    subset: str = "train"  # sub-folder to train on when the dataset has one
    valid_subset: str = ""  # take validation tracks from this sub-folder instead of splitting `subset`
    valid_fraction: float = 0.1
    valid_seconds: float = 10.0  # audio per validation track (from its middle)
    # every validation pass also scores MIR-1K's held-out singers (vocals vs the other stems' sum, GNSDR; a model
    # with a vocals stem only): stemgui.eval.real_voice. real_voice_dir empty: $STEMGUI_MIR1K or the shared copy
    real_voice: bool = False
    real_voice_dir: str = ""
    real_voice_clips: int = 16  # clips per pass, evenly spread over the held-out singers; 0 = all
    # MIR-1K format: train on the real-voice check's singers too (only for protocols that name their own split,
    # e.g. scripts/drnn_mir1k.py; by default they are dropped so no model trains on its own check)
    mir1k_held_out_singers: bool = False
    # Real two-stem material for a four-stem model: every `two_stem_every`-th step's batch comes from this
    # (vocals, accompaniment) dataset, e.g. MIR-1K, and the loss compares the model's vocals with the voice and
    # the sum of its other stems with the accompaniment (stemgui.train.grouping). Empty or 0: off.
    two_stem_dataset: str = ""
    two_stem_every: int = 0
    segment: float = 4.0  # training segment, seconds
    samplerate: int = 44100
    channels: int = 2
    num_workers: int = 0


@dataclass
class AugmentConfig:
    """Demucs-style augmentation, each switchable."""

    remix: bool = True  # each source from a random track
    shift: float = 0.5  # max random time shift per source, seconds
    channel_swap: bool = True
    sign_flip: bool = True
    gain: bool = True
    gain_min: float = 0.25
    gain_max: float = 1.25
    circular_shift: bool = False  # DRNN's augmentation: the voice rotated by a random offset against the rest
    boost_source: str = "drums"  # made louder in `boost_share` of the segments: mixes where it dominates
    boost_share: float = 0.0  # 0 = never (and no extra random draw: the samples stay as before)
    boost_db: float = 12.0  # the boost, drawn uniformly in [0, boost_db] dB
    solo_keep: list[str] = field(default_factory=lambda: ["drums"])  # the sources a solo segment keeps
    solo_share: float = 0.0  # share of segments with every other source silent; 0 = never (no extra draw)


@dataclass
class ModelConfig:
    """The generator: its registered architecture and, for HDemucs, its size.

    `channels` ... `norm_starts` are Hybrid Demucs constructor arguments; another architecture gets only the
    audio format and segment from the config and everything else from `extra` (its own defaults otherwise).
    """

    architecture: str = "hdemucs"  # a name in stemgui.models.architectures
    channels: int = 48
    channels_time: int = 0  # 0 = same as channels
    growth: float = 2.0
    nfft: int = 4096
    depth: int = 6
    dconv_mode: int = 1
    dconv_depth: int = 2
    dconv_comp: int = 4
    dconv_attn: int = 4
    dconv_lstm: int = 4
    norm_starts: int = 4
    extra: dict[str, Any] = field(default_factory=dict)  # any other constructor argument


@dataclass
class LossConfig:
    """Which loss terms are on (preset) and their weights."""

    preset: str = "l1+stft+gan"
    l1: float = 1.0
    # For the first N steps the waveform term is the RMS error instead of the mean absolute error. From a random
    # start, L1 (whose optimum under uncertainty is the conditional median, often 0) drives the outputs towards
    # silence and stays there for thousands of small-batch steps; the RMS error rewards the conditional mean, so
    # coarse separation (a low band for bass, ...) is learned first. Same units as L1, so the weights still fit.
    rms_warmup_steps: int = 0
    # Refinement in the loop: the objective (and D) see the generator's stems after the mixture refinement
    # (stemgui.refine: ratio, wiener, vocals, vocals-strict), the stems the app plays; the exported card then
    # recommends that refinement (separation.refine). "off": the raw stems, as before.
    refine: str = "off"
    stft: float = 0.01  # the seed study's hint: 0.01 relative to MAE 1
    stft_sc: float = 1.0  # spectral convergence share of the STFT loss
    stft_mag: float = 1.0  # log-magnitude share
    stft_sc_floor: float = 0.01  # RMS of the noise floor added to SC's denominator (silent sources stay finite)
    stft_log_floor: float = 1e-4  # RMS of the noise floor under the log magnitudes
    stft_resolutions: list[list[int]] = field(
        default_factory=lambda: [[1024, 120, 600], [2048, 240, 1200], [512, 50, 240]]
    )
    adversarial: float = 0.01
    feature_matching: float = 0.02
    # Spectral presets (the masking papers), on |STFT| of the estimated and true sources with the model's own
    # (nfft, hop): `drnn` (Huang et al.) = `divergence` (mse, or kl: generalized KL) minus `discriminative`
    # (the paper's r / gamma) times the same distance to the other sources; `unet` (Jansson et al.) = L1.
    divergence: str = "mse"
    discriminative: float = 0.05


@dataclass
class DiscriminatorConfig:
    """The waveform discriminators and the countermeasures against D over-fitting."""

    kind: str = "stylemelgan"
    channels: int = 16  # first-layer width: smaller = lighter D
    windows: list[int] = field(default_factory=lambda: [512, 1024, 2048, 4096])
    bands: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    repeats: int = 1  # random windows per scale (the seed study used 4)
    layers: int = 3  # strided grouped conv layers per window discriminator
    spectral_norm: bool = False
    mrsd_resolutions: list[list[int]] = field(
        default_factory=lambda: [[1024, 120, 600], [2048, 240, 1200], [512, 50, 240]]
    )
    d_warmup_steps: int = 1000  # generator-only steps before D starts
    d_every: int = 1  # update D every N steps


@dataclass
class OptimConfig:
    lr: float = 3e-4
    betas: list[float] = field(default_factory=lambda: [0.5, 0.9])
    weight_decay: float = 0.0
    d_lr: float = 2e-4
    d_betas: list[float] = field(default_factory=lambda: [0.5, 0.9])
    d_weight_decay: float = 0.0
    grad_clip: float = 10.0  # 0 = off
    d_grad_clip: float = 1.0
    warmup_steps: int = 0  # linear LR warm-up of G
    lr_decay: str = "none"  # "cosine": G's rate falls from lr at decay_start to lr * lr_min_ratio at the last step
    decay_start: int = 0
    lr_min_ratio: float = 0.05
    ema_decay: float = 0.999  # 0 = no EMA
    ema_warmup: bool = True  # decay min(ema_decay, (1 + n) / (10 + n)) at update n: short runs are not the init
    amp: str = "auto"  # auto: bf16 on CUDA that supports it, off on CPU


@dataclass
class FinetuneConfig:
    base_model: str = ""  # start from this model file; its sources are mapped by name
    lr: float = 5e-5  # replaces optim.lr when base_model is set
    freeze_encoder: int = 0  # freeze the first N encoder layers of both branches


@dataclass
class TrainConfig:
    steps: int = 10000
    # > 0: train for about this many minutes. The speed of the first steps (see trainer.TimeBudget) fixes
    # `steps` (then at most its value here) to what fits; a D warm-up over a fifth of them is cut to a fifth.
    minutes: float = 0.0
    # > 0: stop once this run's process CPU time (time.process_time: every thread, summed over resumes) reaches
    # this many minutes; `steps` is then the most it may run. A fair budget between architectures of unequal speed.
    cpu_minutes: float = 0.0
    batch_size: int = 4  # global batch (split across DDP ranks)
    seed: int = 42
    device: str = "auto"
    out: str = ""  # model file written at the end
    run_dir: str = ""  # checkpoints; default <out without suffix>.run/
    log: str = ""  # JSON lines; default <run_dir>/log.jsonl
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    # Write the model to <run_dir>/best.safetensors at each validation that beats the best so far (score:
    # `trainer.validation_score`). The run's own output stays the last step's; a late collapse cannot take the best.
    keep_best: bool = False
    valid_every: int = 1000
    log_every: int = 10
    max_bad_steps: int = 20  # consecutive non-finite steps before giving up
    threads: int = 0  # torch threads, 0 = torch default
    progress: bool = True


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    # ----------------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "config") -> "Config":
        config = cls()
        config.update(data, where)
        return config

    def copy(self) -> "Config":
        return copy.deepcopy(self)

    def update(self, data: dict[str, Any], where: str = "config") -> None:
        """Merge a nested dict into this config, checking every name and type."""
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a table of sections, got {type(data).__name__}")
        for section_name, values in data.items():
            section = getattr(self, section_name, None)
            if section is None or not dataclasses.is_dataclass(section):
                raise ConfigError(
                    f"{where}: unknown section '{section_name}' (known: {', '.join(section_names())})"
                )
            if not isinstance(values, dict):
                raise ConfigError(f"{where}: section '{section_name}' must be a table")
            for key, value in values.items():
                self.set(f"{section_name}.{key}", value, where)

    def set(self, dotted: str, value: Any, where: str = "config") -> None:
        """Set `section.key` to `value`, coerced to the field's type."""
        parts = dotted.split(".")
        if len(parts) != 2:
            raise ConfigError(f"{where}: setting '{dotted}' must look like section.key (e.g. optim.lr)")
        section_name, key = parts
        section = getattr(self, section_name, None)
        if section is None or not dataclasses.is_dataclass(section):
            raise ConfigError(f"{where}: unknown section '{section_name}' (known: {', '.join(section_names())})")
        fields = {f.name: f for f in dataclasses.fields(section)}
        if key not in fields:
            raise ConfigError(
                f"{where}: unknown setting '{dotted}' (known in [{section_name}]: {', '.join(fields)})"
            )
        current = getattr(section, key)
        setattr(section, key, _coerce(current, value, f"{where}: setting '{dotted}'"))

    def validate(self) -> "Config":
        """Raise ConfigError on the first impossible value; returns self for chaining."""
        d, a, m, lo, disc, o, ft, t = (self.data, self.augment, self.model, self.loss, self.discriminator,
                                        self.optim, self.finetune, self.train)
        _check(d.format in DATA_FORMATS, f"data.format must be one of {', '.join(DATA_FORMATS)}, not '{d.format}'")
        _check(len(d.sources) >= 1, "data.sources must name at least one source")
        _check(len(set(d.sources)) == len(d.sources), f"data.sources has duplicates: {d.sources}")
        _check(0.0 <= d.valid_fraction < 1.0, f"data.valid_fraction must be in [0, 1), not {d.valid_fraction}")
        _check(d.segment > 0, f"data.segment must be positive seconds, not {d.segment}")
        _check(d.valid_seconds > 0, f"data.valid_seconds must be positive, not {d.valid_seconds}")
        _check(d.real_voice_clips >= 0, f"data.real_voice_clips must be >= 0 (0 = all), not {d.real_voice_clips}")
        _check(d.samplerate > 0, f"data.samplerate must be positive, not {d.samplerate}")
        _check(d.channels in (1, 2), f"data.channels must be 1 or 2, not {d.channels}")
        _check(d.num_workers >= 0, f"data.num_workers must be >= 0, not {d.num_workers}")
        _check(d.two_stem_every >= 0, f"data.two_stem_every must be >= 0 (0 = off), not {d.two_stem_every}")
        _check(d.two_stem_every != 1, "data.two_stem_every = 1 would train on the two-stem data only; "
                                      "use it as data.dataset instead")
        _check(bool(d.two_stem_dataset) == bool(d.two_stem_every),
               "data.two_stem_dataset and data.two_stem_every go together (a folder and a step interval >= 2)")
        _check(a.shift >= 0, f"augment.shift must be >= 0 seconds, not {a.shift}")
        _check(0 < a.gain_min <= a.gain_max, "augment.gain_min/gain_max must satisfy 0 < min <= max")
        _check(0 <= a.boost_share <= 1, f"augment.boost_share must be in [0, 1], got {a.boost_share}")
        _check(0 <= a.boost_db <= 40, f"augment.boost_db must be in [0, 40], got {a.boost_db}")
        _check(0 <= a.solo_share <= 1, f"augment.solo_share must be in [0, 1], got {a.solo_share}")
        _check(a.solo_share == 0 or (bool(a.solo_keep) and set(a.solo_keep) <= set(d.sources)),
               f"augment.solo_keep must name some of data.sources ({', '.join(d.sources)}), got {a.solo_keep}")
        architectures = _architecture_names()
        _check(m.architecture in architectures,
               f"model.architecture must be one of {', '.join(architectures)}, not '{m.architecture}'")
        _check(m.channels > 0 and m.depth > 0, "model.channels and model.depth must be positive")
        _check(m.nfft > 0 and (m.nfft & (m.nfft - 1)) == 0, f"model.nfft must be a power of two, not {m.nfft}")
        _check(lo.preset in PRESETS, f"loss.preset must be one of {', '.join(PRESETS)}, not '{lo.preset}'")
        _check(lo.refine in REFINE_MODES, f"loss.refine must be one of {', '.join(REFINE_MODES)}, not '{lo.refine}'")
        _check(not lo.refine.startswith("vocals") or "vocals" in d.sources,
               f"loss.refine '{lo.refine}' needs a vocals source (data.sources: {', '.join(d.sources)})")
        for name in ("l1", "stft", "stft_sc", "stft_mag", "adversarial", "feature_matching"):
            _check(getattr(lo, name) >= 0, f"loss.{name} must be >= 0, not {getattr(lo, name)}")
        _check(lo.divergence in DIVERGENCES,
               f"loss.divergence must be one of {', '.join(DIVERGENCES)}, not '{lo.divergence}'")
        _check(0 <= lo.discriminative < 1, f"loss.discriminative must be in [0, 1), not {lo.discriminative}")
        _check(lo.stft_sc_floor > 0 and lo.stft_log_floor > 0, "loss.stft_sc_floor and loss.stft_log_floor must be > 0")
        _check(lo.l1 > 0 or (lo.preset != "l1" and lo.stft > 0), "the loss weights switch every term off")
        _check_resolutions(lo.stft_resolutions, "loss.stft_resolutions")
        _check(disc.kind in DISCRIMINATOR_KINDS,
               f"discriminator.kind must be one of {', '.join(DISCRIMINATOR_KINDS)}, not '{disc.kind}'")
        _check(len(disc.windows) == len(disc.bands) and disc.windows,
               "discriminator.windows and discriminator.bands must be non-empty lists of the same length")
        for w, b in zip(disc.windows, disc.bands):
            _check(b >= 1 and w % b == 0 and w // b >= 16,
                   f"discriminator window {w} must be a multiple of its band count {b} with >= 16 samples per band")
        _check(disc.channels >= 1 and disc.repeats >= 1 and disc.layers >= 1,
               "discriminator.channels, repeats and layers must be >= 1")
        _check_resolutions(disc.mrsd_resolutions, "discriminator.mrsd_resolutions")
        _check(disc.d_warmup_steps >= 0, "discriminator.d_warmup_steps must be >= 0")
        _check(disc.d_every >= 1, f"discriminator.d_every must be >= 1, not {disc.d_every}")
        for name in ("lr", "d_lr"):
            _check(getattr(o, name) > 0, f"optim.{name} must be positive, not {getattr(o, name)}")
        for name in ("betas", "d_betas"):
            betas = getattr(o, name)
            _check(len(betas) == 2 and all(0 <= b < 1 for b in betas), f"optim.{name} must be two numbers in [0, 1)")
        _check(o.grad_clip >= 0 and o.d_grad_clip >= 0, "optim.grad_clip and optim.d_grad_clip must be >= 0")
        _check(0 <= o.ema_decay < 1, f"optim.ema_decay must be in [0, 1), not {o.ema_decay}")
        _check(o.amp in AMP_MODES, f"optim.amp must be one of {', '.join(AMP_MODES)}, not '{o.amp}'")
        _check(o.warmup_steps >= 0, "optim.warmup_steps must be >= 0")
        _check(o.lr_decay in LR_DECAYS, f"optim.lr_decay must be one of {', '.join(LR_DECAYS)}, not '{o.lr_decay}'")
        _check(o.decay_start >= 0, f"optim.decay_start must be >= 0, not {o.decay_start}")
        _check(0 <= o.lr_min_ratio <= 1, f"optim.lr_min_ratio must be in [0, 1], not {o.lr_min_ratio}")
        _check(ft.lr > 0, "finetune.lr must be positive")
        _check(ft.freeze_encoder >= 0, "finetune.freeze_encoder must be >= 0")
        _check(t.steps >= 1, f"train.steps must be >= 1, not {t.steps}")
        _check(t.minutes >= 0, f"train.minutes must be >= 0 (0 = train for train.steps), not {t.minutes}")
        _check(t.cpu_minutes >= 0, f"train.cpu_minutes must be >= 0 (0 = no CPU-time budget), not {t.cpu_minutes}")
        _check(t.batch_size >= 1, f"train.batch_size must be >= 1, not {t.batch_size}")
        _check(t.checkpoint_every >= 1, f"train.checkpoint_every must be >= 1, not {t.checkpoint_every}")
        _check(t.valid_every >= 1, f"train.valid_every must be >= 1, not {t.valid_every}")
        _check(t.log_every >= 1, "train.log_every must be >= 1")
        _check(t.keep_checkpoints >= 1, "train.keep_checkpoints must be >= 1")
        _check(t.max_bad_steps >= 1, "train.max_bad_steps must be >= 1")
        _check(bool(d.dataset), "data.dataset is not set (use --dataset DIR)")
        return self

    # ----------------------------------------------------------------------------------------------------------
    @property
    def use_stft(self) -> bool:
        return self.loss.preset in ("l1+stft", "l1+stft+gan") and self.loss.stft > 0

    @property
    def use_gan(self) -> bool:
        return self.loss.preset == "l1+stft+gan" and (self.loss.adversarial > 0 or self.loss.feature_matching > 0)

    @property
    def base_lr(self) -> float:
        """G's peak learning rate: finetune.lr when fine-tuning a base model, else optim.lr."""
        return self.finetune.lr if self.finetune.base_model else self.optim.lr

    def lr_at(self, step: int) -> float:
        """G's learning rate at `step`: a pure function of the step, so resume and DDP ranks agree."""
        o = self.optim
        return learning_rate(self.base_lr, step, total_steps=self.train.steps, warmup_steps=o.warmup_steps,
                             decay=o.lr_decay, decay_start=o.decay_start, min_ratio=o.lr_min_ratio)

    def generator_args(self) -> dict[str, Any]:
        """Constructor arguments (without `sources`) of `model.architecture` for a model trained from scratch."""
        m = self.model
        common: dict[str, Any] = {
            "audio_channels": self.data.channels,
            "samplerate": self.data.samplerate,
            "segment": self.data.segment,
        }
        if m.architecture != "hdemucs":
            if _own_format(m.architecture):  # its paper's rate / channels unless model.extra says otherwise;
                del common["audio_channels"], common["samplerate"]  # the trainer reads the data at them
            return {**common, **m.extra}
        args: dict[str, Any] = {
            **common,
            "channels": m.channels,
            "growth": m.growth,
            "nfft": m.nfft,
            "depth": m.depth,
            "dconv_mode": m.dconv_mode,
            "dconv_depth": m.dconv_depth,
            "dconv_comp": m.dconv_comp,
            "dconv_attn": m.dconv_attn,
            "dconv_lstm": m.dconv_lstm,
            "norm_starts": m.norm_starts,
        }
        if m.channels_time:
            args["channels_time"] = m.channels_time
        if float(m.growth).is_integer():
            args["growth"] = int(m.growth)
        args.update(m.extra)
        return args

    def discriminator_args(self) -> dict[str, Any]:
        """SourceDiscriminators keyword arguments (without `sources`); the card records the same dict."""
        d = self.discriminator
        return {"kind": d.kind, "channels": d.channels, "windows": list(d.windows), "bands": list(d.bands),
                "repeats": d.repeats, "layers": d.layers, "spectral_norm": d.spectral_norm,
                "mrsd_resolutions": [list(r) for r in d.mrsd_resolutions]}

    def to_toml(self) -> str:
        lines = ["# StemGUI training configuration (every knob; see `stemgui train --help`)"]
        for section_name in section_names():
            lines.append("")
            lines.append(f"[{section_name}]")
            for key, value in dataclasses.asdict(getattr(self, section_name)).items():
                lines.append(f"{key} = {_toml_value(value)}")
        return "\n".join(lines) + "\n"


def section_names() -> list[str]:
    return [f.name for f in dataclasses.fields(Config)]


def load_config(path: str | Path) -> Config:
    """Read a TOML (.toml) or YAML (.yaml/.yml) config on top of the defaults."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    try:
        text = p.read_text(encoding="utf-8")
        if p.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        elif p.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            data = tomllib.loads(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # tomllib/json/yaml errors are ValueError-like
        raise ConfigError(f"{p}: cannot parse config ({str(exc).splitlines()[0]})") from None
    except Exception as exc:  # noqa: BLE001 - yaml.YAMLError (yaml imported lazily)
        raise ConfigError(f"{p}: cannot parse config ({str(exc).splitlines()[0]})") from None
    return Config.from_dict(data, where=str(p))


def parse_override(text: str) -> tuple[str, Any]:
    """`section.key=value` with a TOML value (`1e-4`, `true`, `[1, 2]`, `"x"`); bare words are strings."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like section.key=value")
    key, raw = (s.strip() for s in text.split("=", 1))
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def _architecture_names() -> list[str]:
    """Architectures a generator can be trained as (a bag is a set of trained models, not one to train)."""
    from stemgui.models.architectures import architecture_names

    return [name for name in architecture_names() if name != "bag"]


def _own_format(architecture: str) -> bool:
    """Whether the architecture runs at its own sample rate / channels (class attribute `own_format`: DRNN's
    16 kHz mono, the U-Net's 8192 Hz mono) rather than at data.samplerate / data.channels."""
    from stemgui.errors import ModelError
    from stemgui.models.architectures import get_class

    try:
        return bool(getattr(get_class(architecture), "own_format", False))
    except ModelError:
        return False


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _check_resolutions(res: list[list[int]], name: str) -> None:
    _check(len(res) >= 1, f"{name} must list at least one (fft, hop, win) triple")
    for triple in res:
        _check(isinstance(triple, (list, tuple)) and len(triple) == 3,
               f"{name} entries must be (fft, hop, win) triples, not {triple}")
        fft, hop, win = triple
        _check(0 < hop and 0 < win <= fft, f"{name} entry {list(triple)} needs 0 < hop and 0 < win <= fft")


def _coerce(current: Any, value: Any, what: str) -> Any:
    """Coerce `value` to the type of the default `current`, with a clear error."""
    if isinstance(current, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "on", "off", "1", "0"):
            return value.lower() in ("true", "yes", "on", "1")
        raise ConfigError(f"{what} must be true or false, not {value!r}")
    if isinstance(current, int):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{what} must be an integer, not {value!r}")
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"{what} must be an integer, not {value!r}") from None
        if not number.is_integer():
            raise ConfigError(f"{what} must be an integer, not {value!r}")
        return int(number)
    if isinstance(current, float):
        if isinstance(value, bool):
            raise ConfigError(f"{what} must be a number, not {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{what} must be a number, not {value!r}") from None
        if not math.isfinite(number):
            raise ConfigError(f"{what} must be a finite number, not {value!r}")
        return number
    if isinstance(current, str):
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{what} must be a string, not {value!r}")
        return str(value)
    if isinstance(current, list):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{what} must be a list, not {value!r}")
        if current and all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in current):
            kind = float if any(isinstance(c, float) for c in current) else int
            return [_coerce(kind(0), v, what) for v in value]
        if current and all(isinstance(c, list) for c in current):
            return [[_coerce(0, x, what) for x in v] if isinstance(v, (list, tuple)) else _bad_list(v, what)
                    for v in value]
        if current and all(isinstance(c, str) for c in current):
            return [_coerce("", v, what) for v in value]
        return list(value)
    if isinstance(current, dict):
        if not isinstance(value, dict):
            raise ConfigError(f"{what} must be a table, not {value!r}")
        return dict(value)
    return value


def _bad_list(value: Any, what: str) -> Any:
    raise ConfigError(f"{what} must be a list of lists, not containing {value!r}")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise ConfigError(f"cannot write {value!r} as TOML")
