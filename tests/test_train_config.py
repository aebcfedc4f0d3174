"""Config files, overrides, --print-config and bad configs rejected with a clear message."""

import pytest

from stemgui.errors import ConfigError
from stemgui.train.config import Config, load_config, parse_override


def _valid() -> Config:
    cfg = Config()
    cfg.data.dataset = "somewhere"
    return cfg


def test_defaults_follow_the_seed_study():
    cfg = _valid().validate()
    assert cfg.loss.preset == "l1+stft+gan" and cfg.use_gan and cfg.use_stft
    assert cfg.optim.betas == [0.5, 0.9] and cfg.optim.d_betas == [0.5, 0.9]
    assert cfg.optim.lr == 3e-4 and cfg.optim.d_lr == 2e-4
    assert cfg.optim.grad_clip == 10 and cfg.optim.d_grad_clip == 1
    assert cfg.discriminator.windows == [512, 1024, 2048, 4096] and cfg.discriminator.bands == [1, 2, 4, 8]
    assert cfg.loss.stft_resolutions == [[1024, 120, 600], [2048, 240, 1200], [512, 50, 240]]


def test_presets_switch_terms():
    cfg = _valid()
    cfg.set("loss.preset", "l1")
    assert not cfg.use_stft and not cfg.use_gan
    cfg.set("loss.preset", "l1+stft")
    assert cfg.use_stft and not cfg.use_gan


def test_toml_and_yaml_files(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('[data]\ndataset = "d"\nsegment = 2\n[optim]\nlr = 1e-4\nbetas = [0.8, 0.99]\n')
    cfg = load_config(toml).validate()
    assert cfg.data.segment == 2.0 and isinstance(cfg.data.segment, float)
    assert cfg.optim.lr == 1e-4 and cfg.optim.betas == [0.8, 0.99]
    yml = tmp_path / "c.yaml"
    yml.write_text("data:\n  dataset: d\ndiscriminator:\n  d_every: 2\n  spectral_norm: true\n")
    cfg = load_config(yml).validate()
    assert cfg.discriminator.d_every == 2 and cfg.discriminator.spectral_norm is True


def test_print_config_round_trips(tmp_path):
    cfg = _valid()
    cfg.set("data.stem_map", {"vocals": "vox.wav"})
    cfg.set("model.extra", {"dconv_init": 0.001})
    path = tmp_path / "round.toml"
    path.write_text(cfg.to_toml())
    assert load_config(path).to_dict() == cfg.to_dict()


def test_overrides():
    assert parse_override("optim.lr=1e-4") == ("optim.lr", 1e-4)
    assert parse_override("loss.preset=l1+stft") == ("loss.preset", "l1+stft")
    assert parse_override("augment.remix=false") == ("augment.remix", False)
    assert parse_override("discriminator.windows=[256, 512]") == ("discriminator.windows", [256, 512])
    cfg = _valid()
    cfg.set(*parse_override("train.steps=12"))
    assert cfg.train.steps == 12
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_override("optim.lr")


@pytest.mark.parametrize("key,value,message", [
    ("optim.lrr", 1.0, "unknown setting 'optim.lrr'"),
    ("optimizer.lr", 1.0, "unknown section 'optimizer'"),
    ("train.steps", "many", "must be an integer"),
    ("train.steps", 1.5, "must be an integer"),
    ("optim.lr", "fast", "must be a number"),
    ("augment.remix", "maybe", "true or false"),
    ("optim.lr", float("nan"), "finite"),
])
def test_bad_values_rejected(key, value, message):
    with pytest.raises(ConfigError, match=message):
        _valid().set(key, value)


@pytest.mark.parametrize("key,value,message", [
    ("loss.preset", "gan-only", "loss.preset must be one of"),
    ("train.steps", 0, "train.steps must be >= 1"),
    ("train.batch_size", 0, "batch_size"),
    ("data.segment", -1.0, "data.segment must be positive"),
    ("optim.betas", [0.5], "optim.betas must be two numbers"),
    ("discriminator.bands", [1, 2, 4], "same length"),
    ("discriminator.windows", [512, 1024, 2050, 4096], "multiple of its band count"),
    ("discriminator.d_every", 0, "d_every must be >= 1"),
    ("loss.stft_resolutions", [[512, 50, 1024]], "win <= fft"),
    ("model.nfft", 1000, "power of two"),
    ("data.format", "mp3", "data.format must be one of"),
    ("optim.ema_decay", 1.0, "ema_decay"),
])
def test_bad_configs_rejected_on_validate(key, value, message):
    cfg = _valid()
    cfg.set(key, value)
    with pytest.raises(ConfigError, match=message):
        cfg.validate()


def test_missing_dataset_and_bad_file(tmp_path):
    with pytest.raises(ConfigError, match="data.dataset is not set"):
        Config().validate()
    bad = tmp_path / "bad.toml"
    bad.write_text("[optim\nlr = 1")
    with pytest.raises(ConfigError, match="bad.toml: cannot parse"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")
    wrong = tmp_path / "wrong.toml"
    wrong.write_text("[optim]\nlearning_rate = 1\n")
    with pytest.raises(ConfigError, match="wrong.toml: unknown setting 'optim.learning_rate'"):
        load_config(wrong)


def _cli(argv):
    from stemgui.cli import build_parser

    return build_parser().parse_args(["train", *argv])


def test_cli_options_map_to_config(tmp_path):
    from stemgui.cli.train import build_config

    args = _cli(["--dataset", "D", "--preset", "l1+stft", "--steps", "7", "--segment", "1.5", "--batch-size", "3",
                 "--out", str(tmp_path / "m.safetensors"), "--set", "optim.lr=2e-4", "--model-channels", "8",
                 "--base-model", "base.safetensors", "--freeze-encoder", "2", "--device", "cpu",
                 "--log", "x.jsonl", "--checkpoint-every", "5", "--valid-every", "6", "--d-every", "2"])
    cfg = build_config(args).validate()
    assert cfg.model.architecture == "hdemucs"  # the default
    assert build_config(_cli(["--dataset", "D", "--architecture", "demucs"])).model.architecture == "demucs"
    assert (cfg.data.dataset, cfg.loss.preset, cfg.train.steps, cfg.data.segment, cfg.train.batch_size) == \
        ("D", "l1+stft", 7, 1.5, 3)
    assert cfg.optim.lr == 2e-4 and cfg.model.channels == 8 and cfg.finetune.freeze_encoder == 2
    assert cfg.train.checkpoint_every == 5 and cfg.train.valid_every == 6 and cfg.discriminator.d_every == 2
    assert cfg.finetune.base_model == "base.safetensors" and cfg.train.log == "x.jsonl"


def test_cli_print_config(capsys):
    from stemgui.cli import main

    assert main(["train", "--print-config", "--set", "optim.lr=0.001"]) == 0
    out = capsys.readouterr().out
    assert "[discriminator]" in out and "lr = 0.001" in out and 'preset = "l1+stft+gan"' in out


def test_cli_rejects_bad_override(capsys):
    from stemgui.cli import main

    assert main(["train", "--print-config", "--set", "optim.nope=1"]) == 1
    assert "unknown setting 'optim.nope'" in capsys.readouterr().err


def test_generator_args_are_hdemucs_sizes_only_for_hdemucs():
    cfg = Config()
    cfg.data.segment = 2.0
    cfg.model.channels = 8
    hdemucs = cfg.generator_args()
    assert hdemucs["channels"] == 8 and hdemucs["depth"] == 6 and hdemucs["segment"] == 2.0
    cfg.model.architecture = "htdemucs"
    cfg.model.extra = {"depth": 4, "t_layers": 2}
    assert cfg.generator_args() == {"audio_channels": 2, "samplerate": 44100, "segment": 2.0, "depth": 4,
                                    "t_layers": 2}


def test_learning_rate_and_discriminator_arguments_have_one_owner():
    from stemgui.models.discriminators import SourceDiscriminators

    cfg = Config()
    cfg.optim.lr, cfg.finetune.lr, cfg.optim.warmup_steps = 1e-3, 1e-5, 4
    assert cfg.base_lr == 1e-3 and cfg.lr_at(0) == pytest.approx(2.5e-4)
    cfg.finetune.base_model = "base.safetensors"
    assert cfg.base_lr == 1e-5 and cfg.lr_at(3) == pytest.approx(1e-5)
    cfg.discriminator.channels, cfg.discriminator.windows, cfg.discriminator.bands = 4, [512], [1]
    d = SourceDiscriminators(["vocals"], **cfg.discriminator_args())
    assert d.init_kwargs == cfg.discriminator_args()
