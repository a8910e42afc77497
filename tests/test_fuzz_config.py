"""Property-based fuzzing of the config: any value at any key is a valid Config or one ConfigError.

Every key of every section (phases and strategy included) gets values of the wrong type, range and
shape; a value that is accepted must be usable: numbers finite, counts in range.
"""

import dataclasses
import math
import typing

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kerastl.config import Config, ConfigError, PhaseConfig, PretrainConfig, StrategyConfig, config_from_dict, load_config


def key_hints(cls, prefix=()) -> dict[tuple, object]:
    """Every leaf key of a config dataclass -> its type hint."""
    hints = {}
    for name, hint in typing.get_type_hints(cls).items():
        if dataclasses.is_dataclass(hint):
            hints.update(key_hints(hint, (*prefix, name)))
        else:
            hints[(*prefix, name)] = hint
    return hints


HINTS = {
    **{key: hint for key, hint in key_hints(Config).items() if key[0] not in ("phases", "strategy", "pretrain")},
    **{("phases", 0, *key): hint for key, hint in key_hints(PhaseConfig).items()},
    **{("strategy", *key): hint for key, hint in key_hints(StrategyConfig).items()},
    **{("pretrain", *key): hint for key, hint in key_hints(PretrainConfig).items()},
}
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
    if key[0] == "strategy":
        return {"strategy": {key[1]: value}}
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


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(KEYS), value=values)
def test_any_value_at_any_key_is_a_config_or_one_config_error(key, value):
    try:
        cfg = config_from_dict(with_value(key, value))
    except ConfigError as exc:
        message = str(exc)
        assert message and "\n" not in message.strip() or "YAML" in message
        return
    assert isinstance(cfg, Config)
    assert all(math.isfinite(number) for number in numbers_in(cfg)), cfg


@settings(max_examples=150, deadline=None)
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
@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(KEYS), value=values)
def test_many_more_values_at_any_key(key, value):
    test_any_value_at_any_key_is_a_config_or_one_config_error.hypothesis.inner_test(key, value)


@pytest.mark.parametrize("key", [key for key in KEYS if key[-1] in ("seed", "chunk_size", "batch_size", "mixup", "warmup_epochs",
                                                                  "early_stopping", "epochs", "bn_momentum")],
                         ids=lambda key: ".".join(map(str, key)))
def test_a_negative_count_or_rate_is_refused(key):
    with pytest.raises(ConfigError, match=r"must be"):
        config_from_dict(with_value(key, -1))
