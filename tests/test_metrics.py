"""The scores behind every reported number, against scikit-learn's definitions."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from musemo.metrics import (
    evaluation,
    expected_calibration_error,
    per_recording,
    scores,
    softmax,
)

sklearn_metrics = pytest.importorskip("sklearn.metrics")


@st.composite
def labelled(draw):
    n_classes = draw(st.integers(2, 5))
    n = draw(st.integers(1, 60))
    label = st.integers(0, n_classes - 1)
    y_true = np.array(draw(st.lists(label, min_size=n, max_size=n)))
    y_pred = np.array(draw(st.lists(label, min_size=n, max_size=n)))
    return y_true, y_pred, n_classes


@settings(max_examples=300, deadline=None)
@given(labelled())
def test_scores_are_scikit_learns(case):
    y_true, y_pred, n = case
    got = scores(y_true, y_pred, n)
    labels = list(range(n))
    assert got["n"] == len(y_true)
    assert got["accuracy"] == pytest.approx(sklearn_metrics.accuracy_score(y_true, y_pred))
    assert got["f1_macro"] == pytest.approx(
        sklearn_metrics.f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
    )
    with warnings.catch_warnings():  # it warns when a predicted class never occurs
        warnings.simplefilter("ignore")
        balanced = sklearn_metrics.balanced_accuracy_score(y_true, y_pred)
    assert got["balanced_accuracy"] == pytest.approx(balanced)
    np.testing.assert_array_equal(
        got["confusion"], sklearn_metrics.confusion_matrix(y_true, y_pred, labels=labels)
    )


def test_a_class_never_seen_nor_predicted_counts_as_zero_f1():
    got = scores(np.array([0, 0, 1, 1]), np.array([0, 0, 1, 1]), 3)
    assert got["accuracy"] == 1.0 and got["balanced_accuracy"] == 1.0
    assert got["f1_macro"] == pytest.approx(2 / 3)


def test_per_recording_averages_each_recordings_probabilities():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4], [0.45, 0.55]])
    recording = np.array([7, 7, 7, 2, 2])
    y_true = np.array([1, 1, 1, 0, 0])
    ids, truth, pred = per_recording(probs, recording, y_true)
    assert ids.tolist() == [2, 7] and truth.tolist() == [0, 1]
    # recording 7: mean (0.467, 0.533) -> 1 although its first sub-clip says 0
    assert pred.tolist() == [0, 1]
    ev = evaluation(probs, y_true, recording, ("happy", "sad"))
    assert ev["labels"] == ["happy", "sad"]
    assert ev["subclip"]["accuracy"] == pytest.approx(3 / 5)
    assert ev["recording"]["accuracy"] == 1.0 and ev["recording"]["n"] == 2


def test_softmax_is_stable_and_sums_to_one():
    logits = np.array([[1000.0, 999.0], [-5.0, 5.0], [0.0, 0.0]])
    p = softmax(logits)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    np.testing.assert_allclose(p[0], [1 / (1 + np.exp(-1)), 1 - 1 / (1 + np.exp(-1))])
    np.testing.assert_allclose(p[2], [0.5, 0.5])


def test_expected_calibration_error_by_hand():
    # confidences 0.95, 0.95 (bin 10: one right) and 0.6 (bin 6: right)
    probs = np.array([[0.95, 0.05], [0.05, 0.95], [0.4, 0.6]])
    y_true = np.array([0, 0, 1])
    ece = expected_calibration_error(probs, y_true)
    assert ece == pytest.approx((2 * abs(0.5 - 0.95) + abs(1 - 0.6)) / 3)
    # a confidence of exactly 0.6 falls in (0.5, 0.6], not in (0.6, 0.7]
    assert expected_calibration_error(probs[2:], y_true[2:], n_bins=10) == pytest.approx(0.4)
    assert np.isnan(expected_calibration_error(np.empty((0, 2)), np.empty(0, dtype=int)))


def test_expected_calibration_error_tells_calibrated_from_overconfident():
    rng = np.random.default_rng(0)
    p_first = rng.uniform(0, 1, 20_000)
    probs = np.stack([p_first, 1 - p_first], axis=1)
    drawn = np.where(rng.uniform(size=p_first.size) < p_first, 0, 1)  # labels drawn from probs
    assert expected_calibration_error(probs, drawn) < 0.02
    # always 99 % sure, right 70 % of the time
    sure = np.tile([0.99, 0.01], (1000, 1))
    truth = (np.arange(1000) % 10 >= 7).astype(int)
    assert expected_calibration_error(sure, truth) == pytest.approx(0.29)


def test_evaluation_reports_calibration_per_subclip_and_recording():
    probs = np.array([[0.9, 0.1], [0.7, 0.3], [0.2, 0.8], [0.4, 0.6]])
    ev = evaluation(probs, np.array([0, 0, 1, 1]), np.array([0, 0, 1, 1]), ("happy", "sad"))
    assert ev["subclip"]["ece"] == pytest.approx(np.mean([0.1, 0.3, 0.2, 0.4]))
    assert ev["recording"]["ece"] == pytest.approx(np.mean([0.2, 0.3]))  # means 0.8 and 0.7
