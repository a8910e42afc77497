"""LabelKind: what single- and multi-label mean for every stage that reads probabilities or labels."""

import numpy as np
import pytest

from kerastl.data.images import ImageSource
from kerastl.labels import LabelKind

SINGLE, MULTI = LabelKind(False), LabelKind(True)
PROBABILITIES = np.array([[0.7, 0.2, 0.1], [0.40, 0.45, 0.15]])


def test_decisions_and_margins_follow_the_label_kind():
    assert SINGLE.decisions(PROBABILITIES).tolist() == [0, 1]
    np.testing.assert_allclose(SINGLE.margin(PROBABILITIES), [0.5, 0.05])
    assert MULTI.decisions(PROBABILITIES).tolist() == [[1, 0, 0], [0, 0, 0]]
    assert MULTI.decisions(np.array([[0.5, 0.49]])).tolist() == [[1, 0]]  # present at the threshold or above
    np.testing.assert_allclose(MULTI.margin(PROBABILITIES), [0.2, 0.05])


def test_agreement_counts_whole_answers():
    other = np.array([[0.6, 0.3, 0.1], [0.50, 0.45, 0.05]])  # top class changes on the second image
    assert SINGLE.agreement(PROBABILITIES, other) == 0.5
    assert MULTI.agreement(PROBABILITIES, other) == 0.5  # the second image's label set gains class 0


@pytest.mark.parametrize("kind", [SINGLE, MULTI])
def test_probabilities_at_a_temperature_round_trip_through_their_logits(kind):
    logits = np.random.default_rng(0).normal(0, 3, (20, 4))
    hot = kind.probabilities(logits, 0.5)
    np.testing.assert_allclose(kind.probabilities(kind.logits(hot)), hot, atol=1e-9)
    assert kind.cross_entropy(kind.probabilities(logits, 100.0), kind.decisions(kind.probabilities(logits))) \
        > kind.cross_entropy(kind.probabilities(logits), kind.decisions(kind.probabilities(logits)))


def test_sources_count_select_and_stratify_by_their_label_kind():
    images = np.zeros((4, 2, 2, 1), np.uint8)
    single = ImageSource(images, np.array([0, 2, 2, 1]), ("a", "b", "c"), "s")
    multi = ImageSource(images, np.array([[1, 0, 1], [0, 0, 1], [1, 1, 0], [0, 0, 0]], np.uint8), ("a", "b", "c"), "m")
    assert single.label_kind.stratifies and not multi.label_kind.stratifies
    assert single.class_counts().tolist() == [1, 1, 2] and multi.class_counts().tolist() == [2, 1, 2]
    assert single.members(2).tolist() == [1, 2] and multi.members(0).tolist() == [0, 2]
    picked = multi.select(["c"], None, seed=0)
    assert picked.labels.tolist() == [[1], [1]] and picked.class_names == ("c",)
