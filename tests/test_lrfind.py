import json

import numpy as np
import pytest
from PIL import Image

from kerastl.config import load_config
from kerastl.errors import ConfigError
from kerastl.training.lrfind import lr_find, suggest
from tests.conftest import TINY


def test_suggestion_is_the_steepest_descent_before_the_minimum():
    rates = list(np.logspace(-6, 0, 61))
    log_rate = np.log10(rates)
    # Flat, then falls fastest around 1e-3, bottoms out near 1e-2, then diverges.
    losses = list(2.0 - 1.5 / (1 + np.exp(-4 * (log_rate + 3))) + np.where(log_rate > -2, (log_rate + 2) ** 2 * 3, 0))
    result = suggest(rates, losses)
    assert 3e-4 < result["suggested_learning_rate"] < 3e-3
    assert 1e-4 < result["min_loss_learning_rate"] < 3e-3


def test_too_few_points_give_no_suggestion():
    assert suggest([1e-5, 1e-4], [1.0, 0.9]) == {"suggested_learning_rate": None, "min_loss_learning_rate": None}


def test_range_test_writes_plot_and_json(tmp_path):
    cfg = load_config(None, TINY + ["phases=[{name: head, epochs: 1, learning_rate: 0.001}]"])
    result = lr_find(cfg, tmp_path, steps=20, min_lr=1e-5, max_lr=10.0)
    head = result["phases"]["head"]
    assert 1e-5 <= head["learning_rates"][0] < head["learning_rates"][-1] <= 10.0
    assert len(head["learning_rates"]) == len(head["smoothed_losses"]) <= 20
    saved = json.loads((tmp_path / "lr_find.json").read_text())
    assert saved["phases"]["head"]["configured_learning_rate"] == 0.001
    with Image.open(tmp_path / "lr_find.png") as picture:
        assert picture.format == "PNG" and picture.width > 400


@pytest.mark.parametrize("kwargs, message", [({"min_lr": 1.0, "max_lr": 0.1}, "0 < min_lr < max_lr"), ({"steps": 3}, "at least 10 steps")])
def test_bad_ranges_are_config_errors(tmp_path, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        lr_find(load_config(None, TINY), tmp_path, **kwargs)
