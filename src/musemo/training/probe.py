"""A frozen pretrained musicnn as a feature extractor: embeddings of every sub-clip,
pooled per recording, then scored zero-shot from its tags or by a linear probe.

Both are judged per recording, on folds of recordings, like every trained model.
"""

from __future__ import annotations

import numpy as np

from .._progress import progress_bar
from ..data.subclips import SubclipData
from ..errors import ParameterError
from ..metrics import recording_means, roc_auc
from .musicnn import MSD_TAGS

# The probe's inputs: the 200-d embedding alone, or with the pooled mid-level features,
# or those with the embedding of the MagnaTagATune checkpoint (keys "MTT_musicnn/...").
PROBE_FEATURES = {
    "penultimate": ("penultimate",),
    "pooled": ("penultimate", "mean_pool", "max_pool"),
    "pooled + MTT_musicnn": ("penultimate", "mean_pool", "max_pool", "MTT_musicnn/penultimate"),
}
PROBE_C = (1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)
# A feature whose standard deviation over the training recordings is below this is
# constant up to float32 rounding (musicnn's pooled features hold a few such channels,
# std 1e-13 to 1e-10 where the others have 1e-4 and more): standardised, it is rounding
# noise, so a probe turned into a network layer gives it no weight.
CONSTANT_STD = 1e-6


def embed_subclips(
    model, data: SubclipData, *, batch_size: int = 32, progress: bool = True
) -> dict[str, np.ndarray]:
    """Run ``model`` (a musicnn in eval mode) over every sub-clip of ``data``:
    ``tags`` (sigmoid of the logits), ``penultimate``, ``mean_pool`` and ``max_pool``,
    each ``(len(data), ...)`` float32."""
    import torch

    model = model.eval()
    parts: dict[str, list[np.ndarray]] = {}
    rows = np.arange(len(data))
    bar = progress_bar(total=len(rows), desc="musicnn embeddings", unit="sub-clip", show=progress)
    with torch.inference_mode(), bar:
        for start in range(0, len(rows), batch_size):
            x = torch.from_numpy(data.stack(rows[start : start + batch_size])[:, None])
            out = model.embed(x.float())
            out["tags"] = torch.sigmoid(out.pop("logits"))
            for key, value in out.items():
                parts.setdefault(key, []).append(value.numpy().astype(np.float32))
            bar.update(len(x))
    return {key: np.concatenate(v) for key, v in parts.items()}


def recording_table(
    data: SubclipData, embeddings: dict[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Per-recording means of the embeddings, with each recording's label and id."""
    recording = data.index[:, 0]
    table = {}
    for key, values in embeddings.items():
        ids, table[key], _ = recording_means(values, recording)
    first = np.unique(recording, return_index=True)[1]
    return table, data.labels[first], ids


def zero_shot_score(tags: np.ndarray) -> np.ndarray:
    """p(happy) - p(sad) from musicnn's MSD tags, ``(n, 50)`` -> ``(n,)``."""
    return tags[:, MSD_TAGS.index("happy")] - tags[:, MSD_TAGS.index("sad")]


def _balanced(predicted: np.ndarray, positive: np.ndarray) -> float:
    return float(np.mean([np.mean(predicted[positive]), np.mean(~predicted[~positive])]))


def best_threshold(score: np.ndarray, positive: np.ndarray) -> float:
    """The threshold on ``score`` with the best balanced accuracy (midpoints between
    sorted scores), as chosen on the training recordings."""
    s = np.sort(np.unique(score))
    candidates = np.concatenate([[s[0] - 1], (s[1:] + s[:-1]) / 2, [s[-1] + 1]])
    accuracies = [_balanced(score > t, positive) for t in candidates]
    return float(candidates[int(np.argmax(accuracies))])


def fold_scores(score: np.ndarray, positive: np.ndarray, threshold: float) -> dict:
    """Balanced accuracy, accuracy (``score > threshold`` is positive) and ROC AUC."""
    return {
        "balanced_accuracy": _balanced(score > threshold, positive),
        "accuracy": float(np.mean((score > threshold) == positive)),
        "roc_auc": roc_auc(score, positive),
    }


def zero_shot_fold(table, positive, train, val) -> dict:
    """Zero-shot scores of the ``val`` recordings, the threshold set on ``train``."""
    score = zero_shot_score(table["tags"])
    threshold = best_threshold(score[train], positive[train])
    return {**fold_scores(score[val], positive[val], threshold), "threshold": threshold}


def _probe(c: float, seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(
        StandardScaler(), LogisticRegression(C=c, max_iter=5000, random_state=seed)
    )


def _choose_c(x, y, groups, seed: int) -> float:
    """The regularisation with the best inner (3-fold, grouped) balanced accuracy."""
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedGroupKFold

    inner = list(StratifiedGroupKFold(3, shuffle=True, random_state=seed).split(x, y, groups))
    means = []
    for c in PROBE_C:
        accs = [
            balanced_accuracy_score(y[b], _probe(c, seed).fit(x[a], y[a]).predict(x[b]))
            for a, b in inner
        ]
        means.append(np.mean(accs))
    return PROBE_C[int(np.argmax(means))]


def fit_probe(x: np.ndarray, y: np.ndarray, groups: np.ndarray, *, seed: int = 0):
    """A logistic regression of the labels ``y`` (booleans or class numbers) on ``x``
    (standardised), its C chosen by grouped inner cross-validation; returns the fitted
    pipeline and C."""
    c = _choose_c(x, y, groups, seed)
    return _probe(c, seed).fit(x, y), c


def probe_as_linear(clf, n_classes: int, *, fold: bool) -> tuple[np.ndarray, ...]:
    """A fitted probe (``fit_probe`` on class numbers) as one linear layer whose softmax
    gives its probabilities: weight ``(n_classes, d)`` and bias, with the scaler's mean and
    scale ``(d,)`` to standardise its input, or (``fold``) those folded into the weights
    (mean 0, scale 1): fine for features of like scales, losing float32 precision for
    unlike ones. Constant features (``CONSTANT_STD``) get weight 0, mean 0 and scale 1."""
    scaler, regression = clf[0], clf[-1]
    if list(regression.classes_) != list(range(n_classes)):
        raise ParameterError(
            f"the probe saw classes {list(regression.classes_)} of {n_classes}: every label "
            "needs training recordings"
        )
    weight, bias = regression.coef_, regression.intercept_
    if n_classes == 2:  # one logit w.x + b: softmax of (-z/2, z/2) is sigmoid(z)
        weight, bias = np.stack([-weight[0], weight[0]]) / 2, np.array([-bias[0], bias[0]]) / 2
    constant = scaler.scale_ < CONSTANT_STD
    weight = np.where(constant, 0.0, weight)
    mean, scale = np.where(constant, 0.0, scaler.mean_), np.where(constant, 1.0, scaler.scale_)
    return _folded(weight, bias, mean, scale) if fold else (weight, bias, mean, scale)


def _folded(weight, bias, mean, scale) -> tuple[np.ndarray, ...]:
    """The same layer on unstandardised input: the scaler folded into the weights."""
    weight = weight / scale
    return weight, bias - weight @ mean, np.zeros_like(mean), np.ones_like(scale)


def axes_probe_as_linear(
    x: np.ndarray, axes: np.ndarray, groups: np.ndarray, label_axes: np.ndarray, *,
    fold: bool, seed: int = 0,
) -> tuple[np.ndarray, ...]:  # fmt: skip
    """Russell's two axes learnt apart (``axes_probe_scores``: a probe for positive
    valence and one for high arousal on recordings ``x`` of any quadrant, ``axes`` ``(n,
    2)`` booleans) as one linear layer over labels whose axes are ``label_axes`` ``(labels,
    2)``: label ``k``'s logit is half the sum of the two axes' logits, each taken with the
    sign of the label's side of it, so happy against sad is valence + arousal. Returns
    weight, bias, mean, scale as ``probe_as_linear`` does, and both C."""
    parts, cs = [], []
    for axis in range(2):
        clf, c = fit_probe(x, axes[:, axis], groups, seed=seed)
        parts.append(probe_as_linear(clf, 2, fold=False))
        cs.append(c)
    (wv, bv, mean, scale), (wa, ba, _, _) = parts  # one scaler: both fitted on x
    sign = np.where(np.asarray(label_axes, dtype=bool), 1.0, -1.0)  # (labels, 2)
    # probe_as_linear's rows are (False, True) at -/+ half the axis' logit
    weight = sign[:, :1] * wv[1] + sign[:, 1:] * wa[1]
    bias = sign[:, 0] * bv[1] + sign[:, 1] * ba[1]
    layer = (weight, bias, mean, scale)
    return (*(_folded(*layer) if fold else layer), tuple(cs))


def probe_inputs(table: dict[str, np.ndarray], features: str) -> np.ndarray:
    """The recordings' ``features`` (a ``PROBE_FEATURES`` name) side by side."""
    if features not in PROBE_FEATURES:
        raise ParameterError(f"features {features!r}: choose one of {', '.join(PROBE_FEATURES)}")
    missing = [k for k in PROBE_FEATURES[features] if k not in table]
    if missing:
        raise ParameterError(f"features {features!r} need embeddings {', '.join(missing)}")
    return np.concatenate([table[k] for k in PROBE_FEATURES[features]], axis=1)


def probe_scores(
    table, positive, groups, train, val, *, features: str, seed: int = 0
) -> tuple[np.ndarray, float]:
    """p(positive) of the ``val`` recordings from a logistic regression on the
    ``features`` of the ``train`` recordings, and its C, chosen by grouped inner
    cross-validation."""
    x = probe_inputs(table, features)
    clf, c = fit_probe(x[train], positive[train], groups[train], seed=seed)
    return clf.predict_proba(x[val])[:, list(clf.classes_).index(True)], c


def axes_probe_scores(
    x: np.ndarray, axes: np.ndarray, groups: np.ndarray, x_val: np.ndarray, *, seed: int = 0
) -> tuple[np.ndarray, tuple[float, float]]:
    """Russell's two axes learnt apart: a probe for positive valence and one for high
    arousal, each on every training recording ``x`` (any quadrant; ``axes`` ``(n, 2)``
    booleans), and the score of each ``x_val`` recording the sum of their logits:
    high for happy (+, +), low for sad (-, -), 0 the boundary. Returns it and both C."""
    logits, cs = [], []
    for axis in range(2):
        clf, c = fit_probe(x, axes[:, axis], groups, seed=seed)
        logits.append(clf.decision_function(x_val))  # the logit of True
        cs.append(c)
    return logits[0] + logits[1], (cs[0], cs[1])


def probe_fold(table, positive, groups, train, val, *, features: str, seed: int = 0) -> dict:
    """The scores of ``probe_scores`` on the ``val`` recordings, threshold 0.5."""
    score, c = probe_scores(table, positive, groups, train, val, features=features, seed=seed)
    return {**fold_scores(score, positive[val], 0.5), "C": c}
