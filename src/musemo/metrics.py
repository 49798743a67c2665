"""Classification scores, per sub-clip and per recording (numpy only)."""

from __future__ import annotations

import numpy as np

# How a recording's probabilities come from its sub-clips': their mean, or the softmax of
# their mean log-probability (the mean of the logits, renormalised). For a linear head
# (a probe fitted on recording-mean features) the second is the head on the recording's
# mean features, the prediction it was fitted to make.
AGGREGATES = ("probabilities", "logits")


def softmax(logits: np.ndarray) -> np.ndarray:
    """Class probabilities of ``(n, classes)`` logits, computed stably."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """``m[i, j]``: how many of class i were predicted as j."""
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(m, (y_true, y_pred), 1)
    return m


def scores(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> dict:
    """Accuracy, balanced accuracy, macro F1 and the confusion matrix of integer labels.

    The same numbers as scikit-learn's ``accuracy_score``, ``balanced_accuracy_score``,
    ``f1_score(average="macro", labels=range(n_classes), zero_division=0)`` and
    ``confusion_matrix(labels=range(n_classes))`` (``tests/test_metrics.py``).
    """
    m = confusion(y_true, y_pred, n_classes)
    support = m.sum(axis=1)
    predicted = m.sum(axis=0)
    tp = np.diag(m).astype(float)
    recall = np.divide(tp, support, out=np.zeros(n_classes), where=support > 0)
    precision = np.divide(tp, predicted, out=np.zeros(n_classes), where=predicted > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(n_classes), where=denom > 0)
    present = support > 0
    return {
        "n": int(len(y_true)),
        "accuracy": float(tp.sum() / max(1, len(y_true))),
        # as scikit-learn: balanced accuracy over the classes that occur, macro F1 over
        # every class (one never seen nor predicted counts as 0)
        "balanced_accuracy": float(recall[present].mean()) if present.any() else 0.0,
        "f1_macro": float(f1.mean()),
        "confusion": m.tolist(),
    }


def recording_means(
    values: np.ndarray, recording: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each recording's mean of per-sub-clip ``values`` ``(n, ...)``: (recording ids,
    means, the index of each sub-clip's recording in ids)."""
    ids, inverse = np.unique(recording, return_inverse=True)
    summed = np.zeros((len(ids), *values.shape[1:]))
    np.add.at(summed, inverse, values)
    return ids, summed / np.bincount(inverse).reshape(-1, *[1] * (values.ndim - 1)), inverse


def check_aggregate(aggregate: str) -> str:
    """``aggregate`` if it is one of ``AGGREGATES``, else a ``ParameterError``."""
    if aggregate not in AGGREGATES:
        from .errors import ParameterError

        raise ParameterError(f"aggregate={aggregate!r}: choose one of {', '.join(AGGREGATES)}")
    return aggregate


def recording_probabilities(
    probs: np.ndarray, recording: np.ndarray, *, aggregate: str = "probabilities"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each recording's class probabilities from its sub-clips' ``(n, classes)`` by
    ``aggregate`` (``AGGREGATES``): (recording ids, probabilities, the index of each
    sub-clip's recording in ids)."""
    if check_aggregate(aggregate) == "probabilities":
        return recording_means(probs, recording)
    ids, mean_log, inverse = recording_means(np.log(np.clip(probs, 1e-12, 1.0)), recording)
    return ids, softmax(mean_log), inverse


def per_recording(
    probs: np.ndarray,
    recording: np.ndarray,
    y_true: np.ndarray,
    *,
    aggregate: str = "probabilities",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each recording's label from its sub-clips' probabilities (``recording_probabilities``):
    (recording ids, true, predicted)."""
    ids, means, inverse = recording_probabilities(probs, recording, aggregate=aggregate)
    truth = np.zeros(len(ids), dtype=np.int64)
    truth[inverse] = y_true
    return ids, truth, means.argmax(axis=1)


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, *, n_bins: int = 10) -> float:
    """How far confidence is from accuracy: the top label's probability of each row
    ``(n, classes)`` in ``n_bins`` equal-width bins, the mean over rows of
    |accuracy - mean confidence| of their bin. 0 for a calibrated model; NaN when empty."""
    if len(probs) == 0:
        return float("nan")
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y_true
    # bins (k/n, (k+1)/n], the first closed below
    bins = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    gap = np.bincount(bins, correct - confidence, minlength=n_bins)
    return float(np.abs(gap).sum() / len(probs))


def tempered(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities ``(n, classes)`` at another temperature: ``softmax(log(probs) / T)``,
    the same as dividing the logits they came from by ``T`` (> 1 softer, < 1 sharper)."""
    return softmax(np.log(np.clip(probs, 1e-12, 1.0)) / temperature)


def fit_temperature(probs: np.ndarray, y_true: np.ndarray) -> float:
    """The temperature (``tempered``) under which probabilities ``(n, classes)`` are
    most likely (lowest mean cross-entropy against ``y_true``): a log-spaced search over
    [0.05, 20], then a finer one around the best. Fit it on held-out predictions of
    what will be shown (e.g. each recording's mean window probability)."""
    rows = np.arange(len(probs))
    log_probs = np.log(np.clip(probs, 1e-12, 1.0))

    def loss(t: float) -> float:
        p = softmax(log_probs / t)[rows, y_true]
        return float(-np.log(np.clip(p, 1e-12, 1.0)).mean())

    grid = np.geomspace(0.05, 20.0, 121)
    best = grid[int(np.argmin([loss(t) for t in grid]))]
    fine = np.geomspace(best / 1.06, best * 1.06, 25)
    return float(fine[int(np.argmin([loss(t) for t in fine]))])


def held_out_calibration(folds: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    """Calibration of cross-validated predictions, each fold ``(probs, y_true)`` of its
    held-out recordings: the temperature fitted on all of them (for the model trained on
    everything); the mean over folds of the expected calibration error as they are and
    at the temperature fitted on the *other* folds (the honest estimate; NaN with one
    fold); and both over all folds' recordings pooled (``ece_pooled``,
    ``ece_pooled_calibrated``). Binned ECE is biased upwards on few rows: a calibrated
    model scored on 90 recordings averages about 0.07, on 450 about 0.03; pool the folds
    to judge a few hundred recordings."""

    def fitted(chosen: list[tuple[np.ndarray, np.ndarray]]) -> float:
        return fit_temperature(*(np.concatenate(part) for part in zip(*chosen)))

    y_all = np.concatenate([y for _, y in folds])
    before = [expected_calibration_error(p, y) for p, y in folds]
    if len(folds) > 1:
        held = [tempered(p, fitted(folds[:i] + folds[i + 1 :])) for i, (p, _) in enumerate(folds)]
        after = [expected_calibration_error(p, y) for p, (_, y) in zip(held, folds)]
        pooled_after = expected_calibration_error(np.concatenate(held), y_all)
    else:
        after, pooled_after = [float("nan")], float("nan")
    return {
        "temperature": fitted(folds),
        "ece": float(np.mean(before)),
        "ece_calibrated": float(np.mean(after)),
        "ece_pooled": expected_calibration_error(np.concatenate([p for p, _ in folds]), y_all),
        "ece_pooled_calibrated": pooled_after,
    }


def evaluation(
    probs: np.ndarray,
    y_true: np.ndarray,
    recording: np.ndarray,
    label_names: tuple[str, ...],
    *,
    aggregate: str = "probabilities",
) -> dict:
    """Scores per sub-clip and per recording from class probabilities ``(n, classes)``,
    a recording's by ``aggregate`` (``recording_probabilities``)."""
    n = len(label_names)
    _, rec_true, rec_pred = per_recording(probs, recording, y_true, aggregate=aggregate)
    _, means, _ = recording_probabilities(probs, recording, aggregate=aggregate)
    result = {
        "labels": list(label_names),
        "subclip": scores(y_true, probs.argmax(axis=1), n),
        "recording": scores(rec_true, rec_pred, n),
    }
    result["subclip"]["ece"] = expected_calibration_error(probs, y_true)
    result["recording"]["ece"] = expected_calibration_error(means, rec_true)
    if n == 2:  # ROC AUC of the second label's (mean) probability
        result["subclip"]["roc_auc"] = roc_auc(probs[:, 1], y_true == 1)
        result["recording"]["roc_auc"] = roc_auc(means[:, 1], rec_true == 1)
    return result


def roc_auc(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` for the boolean ``positive``: the chance that
    a random positive scores above a random negative (ties count half), as scikit-learn's
    ``roc_auc_score``. NaN when either class is absent."""
    score = np.asarray(score, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    sorted_scores = score[order]
    # average ranks over ties (1-based)
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    ranks[order] = np.repeat(first + (counts + 1) / 2, counts)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
