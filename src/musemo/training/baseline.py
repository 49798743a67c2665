"""The simple baseline every CNN must beat: log-mel statistics + logistic regression."""

from __future__ import annotations

import numpy as np

from ..data.subclips import SubclipData
from ..metrics import evaluation


def band_statistics(data: SubclipData, rows: np.ndarray) -> np.ndarray:
    """Mean and standard deviation over time of each mel band: ``(n, 2 * n_mels)``."""
    feats = []
    for i in rows:
        x = np.asarray(data.subclip(int(i)), dtype=np.float64)
        feats.append(np.concatenate([x.mean(axis=1), x.std(axis=1)]))
    return np.array(feats)


def fit_baseline(
    data: SubclipData, train_rows: np.ndarray, val_rows: np.ndarray, *, seed: int = 0
) -> dict:
    """Train on ``train_rows`` and score ``val_rows`` like a CNN run (sub-clips and recordings)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, random_state=seed))
    clf.fit(band_statistics(data, train_rows), data.labels[train_rows])
    probs = np.zeros((len(val_rows), len(data.label_names)))
    probs[:, clf.classes_] = clf.predict_proba(band_statistics(data, val_rows))
    return evaluation(probs, data.labels[val_rows], data.index[val_rows, 0], data.label_names)
