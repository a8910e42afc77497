"""Property-based fuzzing of the config: any value at any key is a valid Config or one ConfigError.

Every key of every section (phases and the optional sections strategy, pretrain and distill included)
gets values of the wrong type, range and shape; a value that is accepted must be usable: numbers finite,
counts and fractions in range.
"""

import dataclasses
import math
import types
import typing

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from kerastl.config import Config, ConfigError, PhaseConfig, config_from_dict, load_config


def section_class(hint):
    """The dataclass a hint names, also behind Optional[...]; None for a leaf."""
    if dataclasses.is_dataclass(hint):
        return hint
    classes = [arg for arg in typing.get_args(hint) if dataclasses.is_dataclass(arg)]
    return classes[0] if typing.get_origin(hint) in (typing.Union, types.UnionType) and classes else None


def key_hints(cls, prefix=()) -> dict[tuple, object]:
    """Every leaf key of a config dataclass -> its type hint, through optional sections too."""
    hints = {}
    for name, hint in typing.get_type_hints(cls).items():
        section = section_class(hint)
        if section is not None:
            hints.update(key_hints(section, (*prefix, name)))
        else:
            hints[(*prefix, name)] = hint
    return hints


HINTS = {
    **{key: hint for key, hint in key_hints(Config).items() if key[0] != "phases"},
    **{("phases", 0, *key): hint for key, hint in key_hints(PhaseConfig).items()},
}
OPTIONAL_SECTIONS = {name for name, hint in typing.get_type_hints(Config).items() if section_class(hint) not in (None, hint)}
KEYS = list(HINTS)
FLOAT_KEYS = [key for key, hint in HINTS.items() if hint is float or float in typing.get_args(hint)]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30), st.text(min_size=300, max_size=400), st.sampled_from(["", "none", "auto", "0", "-1", "1e-4", "top:3", "∞", "\x00"]),
)
values = st.one_of(st.floats(), scalars, st.lists(scalars, max_size=4), st.dictionaries(st.text(max_size=8), scalars, max_size=3))


def with_value(key: tuple, value) -> dict:
    raw: dict = {}
    if key[0] == "phases":
        phase = {"name": "head", key[2]: value} if key[2] != "name" else {"name": value}
        return {"phases": [phase]}
    if key[0] == "distill":
        raw["distill"] = {"teacher": "runs/teacher"}  # the one key without a default
    node = raw
    for part in key[:-1]:
        node = node.setdefault(part, {})
    node[key[-1]] = value
    if key[0] == "pretrain":
        raw["model"] = {"weights": "pretrain"}
    return raw


def numbers_in(value):
    if dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            yield from numbers_in(getattr(value, f.name))
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from numbers_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from numbers_in(item)
    elif isinstance(value, float):
        yield value


# Derandomized, as test_fuzz_data's: the same examples on every run, so a failure is the code's, not the draw's.
@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(KEYS), value=values)
@example(key=("model", "backbone_options"), value={"": math.inf})  # a random run found it: free-form mappings took inf
def test_any_value_at_any_key_is_a_config_or_one_config_error(key, value):
    try:
        cfg = config_from_dict(with_value(key, value))
    except ConfigError as exc:
        message = str(exc)
        assert message and "\n" not in message.strip() or "YAML" in message
        return
    assert isinstance(cfg, Config)
    assert all(math.isfinite(number) for number in numbers_in(cfg)), cfg
    assert_in_range(cfg)


# What training needs of each number, written out here rather than read from kerastl.config.BOUNDS, so a
# bound dropped there is noticed.
RANGES = {
    "data.batch_size": (1, 2**16), "data.chunk_size": (1, None), "data.max_per_class": (1, None),
    "data.split.validation": (0, 1), "data.split.test": (0, 1), "model.input_size": (1, 2048),
    "model.center_crop": (0, 1), "model.head.dropout": (0, 1), "augment.mixup": (0, None), "augment.cutmix": (0, None),
    "augment.gridmask": (0, 1), "compute.augmented_copies": (0, None), "phases.*.epochs": (0, None),
    "phases.*.warmup_epochs": (0, None), "phases.*.early_stopping": (1, None), "phases.*.learning_rate": (0, None),
    "phases.*.lr_decay": (0, 1), "phases.*.ema": (0, 1), "phases.*.label_smoothing": (0, 1),
    "strategy.epochs": (1, None), "strategy.learning_rate": (0, None), "strategy.blocks": (1, None),
    "pretrain.epochs": (0, None), "pretrain.learning_rate": (0, None), "pretrain.batch_size": (1, None),
    "pretrain.validation": (0, 1), "pretrain.bn_momentum": (0, 1), "loss.focal_gamma": (0, None),
    "distill.temperature": (0, None), "distill.alpha": (0, 1), "seed": (0, 2**32 - 1),
}


def values_at(node, parts: list[str]):
    """The values at a dotted key's parts; `*` is every item of a list (every phase)."""
    if not parts:
        yield node
    elif parts[0] == "*":
        for item in node:
            yield from values_at(item, parts[1:])
    elif node is not None:
        yield from values_at(getattr(node, parts[0], None), parts[1:])


def assert_in_range(cfg: Config) -> None:
    for key, (low, high) in RANGES.items():
        for value in values_at(cfg, key.split(".")):
            if value is None or isinstance(value, (str, bool)):
                continue
            assert (low is None or value >= low) and (high is None or value <= high), f"{key} = {value} accepted"


def test_every_optional_section_is_fuzzed():
    assert OPTIONAL_SECTIONS == {"strategy", "pretrain", "distill", "tune"}
    for section in OPTIONAL_SECTIONS:
        assert any(key[0] == section for key in KEYS), section
    assert ("distill", "temperature") in KEYS and ("distill", "alpha") in KEYS


@settings(max_examples=150, deadline=None, derandomize=True)
@given(key=st.sampled_from(KEYS), text=st.text(max_size=40))
def test_any_command_line_override_is_a_config_or_one_config_error(key, text):
    try:
        load_config(None, [".".join(map(str, key)) + "=" + text])
    except ConfigError:
        pass


@pytest.mark.parametrize("key", FLOAT_KEYS, ids=lambda key: ".".join(map(str, key)))
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), "nan"])
def test_a_number_that_is_not_finite_is_refused_at_every_float_key(key, value):
    with pytest.raises(ConfigError, match=r"must be|finite"):
        config_from_dict(with_value(key, value))


@pytest.mark.slow
@settings(max_examples=3000, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(KEYS), value=values)
def test_many_more_values_at_any_key(key, value):
    test_any_value_at_any_key_is_a_config_or_one_config_error.hypothesis.inner_test(key, value)


@pytest.mark.parametrize("key", [key for key in KEYS if key[-1] in ("seed", "chunk_size", "batch_size", "mixup", "warmup_epochs",
                                                                  "early_stopping", "epochs", "bn_momentum", "temperature",
                                                                  "alpha", "focal_gamma")],
                         ids=lambda key: ".".join(map(str, key)))
def test_a_negative_count_or_rate_is_refused(key):
    with pytest.raises(ConfigError, match=r"must be"):
        config_from_dict(with_value(key, -1))
