"""Training by generative optimization: a generator of any registered architecture (HDemucs by default),
per-source discriminators, MR-STFT + LSGAN losses.

Python API:
    from stemgui.train import Config, train, load_config
    cfg = Config(); cfg.data.dataset = "musdb18hq"; cfg.train.out = "my.safetensors"; cfg.train.steps = 1000
    train(cfg)              # or train(cfg, resume=True) to continue from the run folder's checkpoint
The CLI (`stemgui train`) and the GUI fine-tune panel are thin layers over this.
"""

from stemgui.train.config import PRESETS, Config, load_config, parse_override

__all__ = ["PRESETS", "Config", "load_config", "parse_override", "train"]


def train(cfg: Config, *, resume: bool = False, on_step=None):
    """Run training as configured; see stemgui.train.trainer.train."""
    from stemgui.train.trainer import train as _train

    return _train(cfg, resume=resume, on_step=on_step)
