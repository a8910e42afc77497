import pytest
import yaml

from kerastl.config import Config, config_from_dict, dump_config, load_config
from kerastl.errors import ConfigError


def test_defaults_follow_the_two_phase_recipe():
    cfg = Config()
    assert [p.name for p in cfg.phases] == ["head", "finetune"]
    assert cfg.phases[0].unfreeze is None and cfg.phases[1].unfreeze == 30
    assert cfg.model.weights == "imagenet"


def test_yaml_file_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: x\ndata: {source: 'csv:a.csv', image_shape: [28, 28, 1]}\nphases:\n  - {name: head, epochs: 3}\n")
    cfg = load_config(path, ["phases.0.epochs=1", "model.weights=none", "data.split.test=0.2"])
    assert cfg.name == "x" and cfg.data.image_shape == (28, 28, 1)
    assert cfg.phases[0].epochs == 1 and cfg.model.weights == "none" and cfg.data.split.test == 0.2


def test_override_of_default_phases_keeps_both_phases():
    cfg = load_config(None, ["phases.1.unfreeze=all"])
    assert [p.name for p in cfg.phases] == ["head", "finetune"]
    assert cfg.phases[1].unfreeze == "all"


def test_learning_rate_written_without_dot_is_a_number():
    # YAML 1.1 reads 1e-4 as a string; users write it anyway.
    assert load_config(None, ["phases.1.learning_rate=1e-4"]).phases[1].learning_rate == pytest.approx(1e-4)


def test_dump_round_trips():
    cfg = load_config(None, ["data.classes=[1, 2]", "model.head.hidden=[64]"])
    assert config_from_dict(yaml.safe_load(dump_config(cfg))) == cfg
    assert cfg.data.classes == ("1", "2")


@pytest.mark.parametrize(
    "override, message",
    [
        ("data.batchsize=3", "Unknown config key 'data.batchsize'. Did you mean 'batch_size'?"),
        ("modle.weights=none", "Unknown config key 'modle'. Did you mean 'model'?"),
        ("data.batch_size=many", "Config key 'data.batch_size' must be an integer, got 'many'"),
        ("model.head.pooling=mean", "Config key 'model.head.pooling' must be one of 'avg', 'max', 'flatten'; got 'mean'"),
        ("phases.1.unfreeze=some", "Config key 'phases.1.unfreeze' must be one of head, top:N (or N), blocks:K, from:LAYER_NAME, all, lora:R; got 'some'"),
        ("phases.1.unfreeze=blocks:x", "Config key 'phases.1.unfreeze' must be one of head, top:N"),
        ("phases.1.lr_decay=1.5", "Config key 'phases.1.lr_decay' must be in (0, 1], got 1.5"),
        ("phases.1.bn=update", "Config key 'phases.1.bn' must be one of 'auto', 'frozen', 'train'; got 'update'"),
        ("phases.1.ema=1", "Config key 'phases.1.ema' must be in (0, 1), e.g. 0.999; got 1.0"),
        ("strategy.preset=fast", "Config key 'strategy.preset': Unknown strategy preset 'fast'. Expected one of: head, guide, top, gradual, deep (or auto)."),
        ("model.backbone=resnet", "Unknown backbone 'resnet'. Did you mean 'resnet50'?"),
        ("model.input_size=16", "below the minimum 32 of backbone 'mobilenet_v2'"),
        ("data.split.test=0.9", "must sum to less than 1"),
        ("phases.5.epochs=1", "'phases.5' needs an index below 2"),
        ("model.weights=pretrain", "no 'pretrain' section"),
        ("novalue", "must look like key.sub=value"),
    ],
)
def test_bad_config_is_one_clear_error(override, message):
    with pytest.raises(ConfigError, match=None) as info:
        load_config(None, [override])
    assert message in str(info.value)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="Cannot read config file"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(bad)


