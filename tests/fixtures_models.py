"""Tiny trained checkpoints for the export and edge tests."""

from __future__ import annotations


def train_tiny(root, folder, cache, model: str):
    """A checkpoint of ``model`` trained for two epochs on the chord recordings."""
    from fixtures_audio import tiny_spec

    from musemo.data import holdout_split, load_dataset
    from musemo.training import TrainConfig, fit

    data, _ = load_dataset(folder, tiny_spec(), cache=cache, progress=False)
    train, val = holdout_split(data, val_fraction=0.25, seed=0)
    cfg = TrainConfig(model=model, epochs=2, batch_size=16, lr=3e-3 if "squeeze" in model else None)
    fit(data, train, val, tiny_spec(), cfg, root / model, progress=False)
    return root / model / "last.pt"
