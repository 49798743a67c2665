"""Honest splits: stratified by label, grouped by recording or song (or the paper's
random sub-clip split, to measure its leak)."""

from __future__ import annotations

import numpy as np

from ..errors import ParameterError
from .subclips import UNLABELLED_ROW, SubclipData

SPLIT_MODES = ("grouped", "random")


FOLDS_HINT = "add recordings or use fewer folds"


def _check_split(data: SubclipData, n_splits: int, mode: str, hint: str = FOLDS_HINT) -> None:
    if mode not in SPLIT_MODES:
        raise ParameterError(f"split mode {mode!r}: use one of {SPLIT_MODES}")
    counts = np.bincount(data.labels[labelled_rows(data)], minlength=len(data.label_names))
    for name, count in zip(data.label_names, counts):
        if count == 0:
            raise ParameterError(f"label {name!r} has no sub-clips")
    if mode == "grouped":
        for k, name in enumerate(data.label_names):
            n_groups = len(set(data.groups[data.labels == k]))
            if n_groups < n_splits:
                raise ParameterError(
                    f"label {name!r} has {n_groups} recording group(s); a grouped split into "
                    f"{n_splits} parts needs at least {n_splits} per label: {hint}"
                )


def kfold_splits(
    data: SubclipData, *, k: int = 5, mode: str = "grouped", seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` (train, validation) index pairs over sub-clips, stratified by label.

    Parameters
    ----------
    data : SubclipData
        The sub-clips.
    k : int
        Folds.
    mode : {"grouped", "random"}
        ``"grouped"`` keeps every group (recording, song or artist) on one side and
        stratifies recordings, so features of other sub-clip lengths (another model's
        spec) of the same recordings get the same folds; ``"random"`` splits sub-clips
        as the paper did, letting sub-clips of one recording fall on both sides (it
        inflates accuracy: use it to measure that).
    seed : int
        Seed of the shuffle.

    Returns
    -------
    list of (numpy.ndarray, numpy.ndarray)
        Sub-clip indices of each fold's training and validation side (labelled sub-clips
        only: ``with_unlabelled`` adds the others to a training side).

    Raises
    ------
    ParameterError
        A label without sub-clips, or fewer groups of a label than folds.
    """
    _check_split(data, k, mode)
    return _folds(data, k, mode, seed)


def _folds(data: SubclipData, k: int, mode: str, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    rows = labelled_rows(data)
    if mode == "grouped":
        recording = data.index[rows, 0]
        present, first = np.unique(recording, return_index=True)
        groups = np.array([data.recordings[r].group for r in present])
        folds = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        return [
            (rows[np.isin(recording, present[a])], rows[np.isin(recording, present[b])])
            for a, b in folds.split(present, data.labels[rows][first], groups)
        ]
    folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return [(rows[a], rows[b]) for a, b in folds.split(rows, data.labels[rows])]


def labelled_rows(data: SubclipData) -> np.ndarray:
    """The sub-clips with a label: what splits share out (unlabelled ones only train)."""
    return np.flatnonzero(data.labels != UNLABELLED_ROW)


def with_unlabelled(data: SubclipData, train: np.ndarray, val: np.ndarray) -> np.ndarray:
    """``train`` and the unlabelled sub-clips, but for those of a group on the
    validation side (audio by a held-out artist stays out of its fold's training)."""
    extra = np.flatnonzero(data.labels == UNLABELLED_ROW)
    extra = extra[~np.isin(data.groups[extra], data.groups[val])]
    return np.concatenate([train, extra])


def holdout_split(
    data: SubclipData, *, val_fraction: float = 0.15, mode: str = "grouped", seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """One (train, validation) split with about ``val_fraction`` of the sub-clips held out
    (the paper's 85/15): the first fold of ``round(1 / val_fraction)`` stratified folds.
    A grouped split of a small set (a label with fewer groups than that) takes as many
    folds as its smallest label has groups, at least 2: one group of each label held out.
    ``val_fraction=0`` holds nothing out: every sub-clip trains (a final model, whose
    accuracy comes from cross-validating the same settings)."""
    if not 0 <= val_fraction < 0.5:
        raise ParameterError(f"val_fraction={val_fraction}: must be in [0, 0.5)")
    if val_fraction == 0:
        _check_split(data, 1, mode)
        return labelled_rows(data), np.arange(0)
    k = max(2, round(1 / val_fraction))
    if mode == "grouped":
        k = max(2, min(k, _fewest_groups(data)))
    hint = "add recordings, or --val-fraction 0 trains on all of them with nothing to score"
    _check_split(data, k, mode, hint)
    return _folds(data, k, mode, seed)[0]


def _fewest_groups(data: SubclipData) -> int:
    """The number of groups of the label that has fewest."""
    labels, groups = data.labels, data.groups
    return min(len(set(groups[labels == k])) for k in range(len(data.label_names)))


def describe_split(data: SubclipData, train: np.ndarray, val: np.ndarray, mode: str) -> dict:
    """What a split holds, for the run directory: counts and the held-out groups."""
    groups = data.groups
    overlap = sorted(set(groups[train]) & set(groups[val]))
    return {
        "mode": mode,
        "train_subclips": int(len(train)),
        "val_subclips": int(len(val)),
        "train_groups": int(len(set(groups[train]))),
        "val_groups": sorted(set(groups[val].tolist())),
        "groups_on_both_sides": len(overlap),
        "val_label_counts": {
            name: int((data.labels[val] == k).sum()) for k, name in enumerate(data.label_names)
        },
    }
