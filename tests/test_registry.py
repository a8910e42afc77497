import re
import typing
from pathlib import Path

import pytest

import kerastl.config
from kerastl.config import REGISTRY_CHOICES, Config, choice_registry, load_config
from kerastl.errors import ConfigError
from kerastl.models.backbones import backbone_names, get_backbone

REQUIRED = [
    "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0", "efficientnet_b1",
    "efficientnet_b2", "efficientnet_b3", "efficientnet_v2_b0", "efficientnet_v2_b1", "efficientnet_v2_b2",
    "resnet50", "resnet50_v2", "densenet121", "vgg16", "xception", "convnext_tiny",
]


def test_every_required_backbone_is_registered():
    assert set(REQUIRED) <= set(backbone_names())


def test_lookup_tolerates_dashes_and_case():
    assert get_backbone("MobileNet-V2").name == "mobilenet_v2"


def test_pattern_filter():
    assert backbone_names("efficientnet_v2*") == ["efficientnet_v2_b0", "efficientnet_v2_b1", "efficientnet_v2_b2"]


def test_unknown_name_suggests_close_match():
    with pytest.raises(ConfigError, match=r"Did you mean 'densenet121'\?"):
        get_backbone("densenet")


# --- every list of choices is its registry -------------------------------------------------------------

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
OVERRIDE = {"phases.*.optimizer": "phases.0.optimizer={}", "strategy.preset": "strategy={{preset: {}}}"}


@pytest.mark.parametrize("key", list(REGISTRY_CHOICES))
def test_a_config_choice_takes_exactly_its_registry_names(key):
    names = choice_registry(key).names()
    section, _, field_name = key.rpartition(".")
    owner = {"phases.*": "PhaseConfig", "strategy": "StrategyConfig"}.get(section)
    hints = typing.get_type_hints(getattr(kerastl.config, owner) if owner else type(getattr(Config(), section)))
    assert hints[field_name] is str, f"{key} repeats its choices in a Literal"
    with pytest.raises(ConfigError) as refused:
        load_config(None, [OVERRIDE.get(key, key + "={}").format("no_such_choice")])
    listed = str(refused.value).split("Expected one of: ")[1]
    assert re.findall(r"[\w]+", listed.split(" (or ")[0]) == names
    for name in names:  # and each is accepted
        load_config(None, [OVERRIDE.get(key, key + "={}").format(name)])


@pytest.mark.parametrize("key", [k for k in REGISTRY_CHOICES if k != "model.backbone"])
def test_the_readme_config_reference_lists_every_choice(key):
    field_name = key.rpartition(".")[2]
    lines = [line for line in README.splitlines() if re.match(rf"[#\s]*{field_name}: \S+\s+#", line)]
    names = choice_registry(key).names()
    assert any(all(re.search(rf"\b{name}\b", line.split("#", 1)[1]) for name in names) for line in lines), (key, names)


def test_cli_export_choices_are_the_format_registry():
    from kerastl.cli import export
    from kerastl.deploy.formats import FORMATS, quantizations

    params = {param.name: param for param in export.params}
    assert list(params["export_format"].type.choices) == FORMATS.names()
    assert tuple(params["quantize"].type.choices) == quantizations()
    for name in FORMATS.names():
        assert re.search(rf"--format [^|]*\b{name}\b", README), f"README's export row misses {name}"


def test_the_readme_documents_every_source_kind():
    from kerastl.data.sources import SOURCE_KINDS

    for name in SOURCE_KINDS.names():
        assert f"`{name}:" in README, f"README's data source table misses {name}:"
