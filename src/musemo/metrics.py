"""Classification scores, per sub-clip and per recording (numpy only)."""

from __future__ import annotations

import numpy as np


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


def per_recording(
    probs: np.ndarray, recording: np.ndarray, y_true: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Average each recording's sub-clip probabilities: (recording ids, true, predicted)."""
    ids, inverse = np.unique(recording, return_inverse=True)
    summed = np.zeros((len(ids), probs.shape[1]))
    np.add.at(summed, inverse, probs)
    truth = np.zeros(len(ids), dtype=np.int64)
    truth[inverse] = y_true
    return ids, truth, summed.argmax(axis=1)


def evaluation(
    probs: np.ndarray, y_true: np.ndarray, recording: np.ndarray, label_names: tuple[str, ...]
) -> dict:
    """Scores per sub-clip and per recording from class probabilities ``(n, classes)``."""
    n = len(label_names)
    _, rec_true, rec_pred = per_recording(probs, recording, y_true)
    return {
        "labels": list(label_names),
        "subclip": scores(y_true, probs.argmax(axis=1), n),
        "recording": scores(rec_true, rec_pred, n),
    }
