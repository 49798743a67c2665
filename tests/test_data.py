"""Recordings, sub-clips, the feature cache and honest splits."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import soundfile as sf
from fixtures_audio import TINY_SR, tiny_spec, write_chord_dataset

import musemo
from musemo import ParameterError
from musemo.data import (
    FeatureCache,
    Recording,
    holdout_split,
    kfold_splits,
    load_dataset,
    load_recordings,
    read_manifest,
    scan_folder,
)
from musemo.features import subclip_starts, subclips


@pytest.fixture
def chord_folder(tmp_path):
    return write_chord_dataset(tmp_path / "chords")


def test_scan_folder_labels_from_folder_names(chord_folder):
    recs = scan_folder(chord_folder)
    assert len(recs) == 12
    assert {r.label for r in recs} == {"happy", "sad"}
    assert all(r.group == r.path.stem for r in recs)


def test_scan_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such data folder"):
        scan_folder(tmp_path / "missing")
    (tmp_path / "empty" / "happy").mkdir(parents=True)
    with (
        pytest.warns(UserWarning, match="holds no audio files"),
        pytest.raises(ParameterError, match="holds no labelled audio"),
    ):
        scan_folder(tmp_path / "empty")


def test_manifest_with_groups_and_ratings(chord_folder):
    files = sorted(chord_folder.rglob("*.wav"))
    manifest = chord_folder / "ratings.csv"
    lines = ["path,rating,group"] + [
        f"{f.relative_to(chord_folder)},{4.5 if 'happy' in f.name else 1.5},song{i // 2}"
        for i, f in enumerate(files)
    ]
    manifest.write_text("\n".join(lines) + "\n")
    recs = read_manifest(manifest, rating="rating", threshold=3.0)
    assert [r.label for r in recs] == ["happy" if "happy" in f.name else "sad" for f in files]
    assert recs[0].group == "song0" and recs[2].group == "song1"
    with pytest.raises(ParameterError, match="needs a threshold"):
        read_manifest(manifest, rating="rating")
    with pytest.raises(ParameterError, match=r"needs columns \['label', 'path'\]"):
        read_manifest(manifest)


def test_manifest_paths_that_leave_its_folder_are_refused_unless_allowed(tmp_path, chord_folder):
    data = tmp_path / "data"
    data.mkdir()
    inside = sorted(chord_folder.rglob("*.wav"))[0]
    (data / "in.wav").write_bytes(inside.read_bytes())
    for escape in ["../outside.wav", str(inside), "sub/../../outside.wav"]:
        manifest = data / "manifest.csv"
        manifest.write_text(f"path,label\nin.wav,happy\n{escape},sad\n")
        with pytest.raises(ParameterError, match=r"manifest.csv:3: .* lies outside"):
            load_recordings(data)
        recs = read_manifest(manifest, allow_outside_root=True)
        assert recs[1].path.is_absolute() and ".." not in recs[1].path.parts
    manifest.write_text("path,label\nsub/../in.wav,happy\n")  # stays inside: fine
    assert read_manifest(manifest)[0].path == data / "in.wav"


def test_labels_with_odd_characters_survive_the_round_trip(tmp_path, chord_folder):
    files = sorted(chord_folder.rglob("*.wav"))
    labels = ["très heureux, 😀", 'sad "minor"']
    manifest = chord_folder / "odd.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        for i, file in enumerate(files):
            writer.writerow([file.relative_to(chord_folder), labels[i % 2]])
    data, _ = load_dataset(manifest, tiny_spec(), cache=tmp_path / "cache", progress=False)
    assert data.label_names == tuple(sorted(labels))
    assert len(data) > 0


@pytest.mark.parametrize(
    ("n", "hop", "tail", "expected"),
    [
        (45000, None, "drop", [0, 16000]),
        (45000, None, "pad", [0, 16000, 32000]),
        (39999, None, "pad", [0, 16000]),
        (40000, None, "pad", [0, 16000, 32000]),
        (32000, 0.5, "drop", [0, 8000, 16000]),
        (15999, None, "drop", []),
        (15999, None, "pad", [0]),
    ],
)
def test_subclip_starts(n, hop, tail, expected):
    spec = tiny_spec(clip_hop_seconds=hop, clip_tail=tail)
    assert subclip_starts(n, spec) == expected


def test_subclips_pad_the_tail_with_silence():
    y = np.ones(25000, np.float32)
    clips = subclips(y, tiny_spec(clip_tail="pad"))
    assert clips.shape == (2, 16000)
    assert clips[1, :9000].all() and not clips[1, 9000:].any()


def test_cache_computes_once_and_matches_the_extractor(tmp_path, chord_folder):
    spec = tiny_spec()
    data, report = load_dataset(chord_folder, spec, cache=tmp_path / "cache", progress=False)
    assert (report.computed, report.reused, report.failed) == (12, 0, [])
    assert len(data) == 48 and data.label_names == ("happy", "sad")
    rec = data.recordings[0]
    y, _ = musemo.load_audio(rec.path, sr=TINY_SR)
    expected = musemo.MelExtractor(spec).compute_batch(list(subclips(y, spec)))
    np.testing.assert_array_equal(data.features[0], np.stack(expected))
    assert isinstance(data.features[0], np.memmap)
    _, again = load_dataset(chord_folder, spec, cache=tmp_path / "cache", workers=2, progress=False)
    assert (again.computed, again.reused) == (0, 12)


def test_each_subclip_has_its_own_db_floor(tmp_path):
    """A quiet second beside a loud one gets the features it gets alone: its 80 dB floor
    is not set by the loud second's peak (nor by which sub-clips share a batch)."""
    t = np.arange(TINY_SR) / TINY_SR
    loud = np.sin(2 * np.pi * 440 * t)
    quiet = 1e-3 * np.sin(2 * np.pi * 440 * t) + 1e-6 * np.random.default_rng(0).random(TINY_SR)
    path = tmp_path / "quiet_then_loud.wav"
    sf.write(path, np.concatenate([quiet, loud]).astype(np.float32), TINY_SR, subtype="FLOAT")
    rec = Recording(path, "happy", "a")
    report = FeatureCache(tmp_path / "cache", tiny_spec()).build([rec], progress=False)
    features = np.load(report.entries[path])
    y, _ = musemo.load_audio(path)
    ex = musemo.MelExtractor(tiny_spec())
    np.testing.assert_array_equal(features[0], ex.compute(y[:TINY_SR]))
    np.testing.assert_array_equal(features[1], ex.compute(y[TINY_SR:]))
    # the recording's floor (80 dB under the loud second) would have cut the quiet one's detail
    assert features[0].min() < ex.compute(y).min()


def test_cache_keys_follow_content_and_spec(tmp_path, chord_folder):
    cache = tmp_path / "cache"
    load_dataset(chord_folder, tiny_spec(), cache=cache, progress=False)
    _, other_spec = load_dataset(chord_folder, tiny_spec(n_mels=32), cache=cache, progress=False)
    assert other_spec.computed == 12
    # the input normalisation is not part of the features: same entries
    _, same = load_dataset(
        chord_folder, tiny_spec(input_mean=1.0, input_std=2.0), cache=cache, progress=False
    )
    assert same.computed == 0
    changed = sorted(chord_folder.rglob("*.wav"))[0]
    y, sr = sf.read(changed)
    sf.write(changed, 0.5 * y, sr)
    _, after = load_dataset(chord_folder, tiny_spec(), cache=cache, progress=False)
    assert (after.computed, after.reused) == (1, 11)


def test_parallel_cache_equals_serial(tmp_path, chord_folder):
    a, _ = load_dataset(chord_folder, tiny_spec(), cache=tmp_path / "a", progress=False)
    b, _ = load_dataset(chord_folder, tiny_spec(), cache=tmp_path / "b", workers=2, progress=False)
    for x, y in zip(a.features, b.features):
        np.testing.assert_array_equal(x, y)


def test_unreadable_and_too_short_files_are_listed_and_skipped(tmp_path, chord_folder):
    (chord_folder / "sad" / "broken.wav").write_bytes(b"not audio")
    sf.write(chord_folder / "happy" / "short.wav", np.zeros(1000, np.float32), TINY_SR)
    data, report = load_dataset(chord_folder, tiny_spec(), cache=tmp_path / "c", progress=False)
    reasons = {p.name: why for p, why in report.failed}
    assert set(reasons) == {"broken.wav", "short.wav"}
    assert "cannot decode" in reasons["broken.wav"]
    assert "shorter than one 1 s sub-clip" in reasons["short.wav"]
    assert len(data.recordings) == 12
    with pytest.raises(musemo.AudioError, match="short.wav|broken.wav"):
        load_dataset(chord_folder, tiny_spec(), cache=tmp_path / "d", progress=False, strict=True)


def test_one_label_is_refused(tmp_path):
    root = write_chord_dataset(tmp_path / "one")
    for f in (root / "sad").iterdir():
        f.unlink()
    (root / "sad").rmdir()
    with pytest.raises(ParameterError, match="one label only"):
        load_dataset(root, tiny_spec(), cache=tmp_path / "c", progress=False)


@pytest.fixture
def chord_data(tmp_path, chord_folder):
    return load_dataset(chord_folder, tiny_spec(), cache=tmp_path / "cache", progress=False)[0]


def test_grouped_splits_keep_recordings_together(chord_data):
    for train, val in kfold_splits(chord_data, k=3, seed=1):
        assert not set(chord_data.groups[train]) & set(chord_data.groups[val])
        assert set(chord_data.labels[val]) == {0, 1}  # stratified
    train, val = holdout_split(chord_data, val_fraction=0.34)
    assert len(val) == 16 and not set(chord_data.groups[train]) & set(chord_data.groups[val])


def test_random_split_mixes_recordings(chord_data):
    train, val = holdout_split(chord_data, val_fraction=0.25, mode="random")
    assert set(chord_data.groups[train]) & set(chord_data.groups[val])


def test_too_few_groups_for_the_folds(chord_data):
    with pytest.raises(ParameterError, match="needs at least 7 per label"):
        kfold_splits(chord_data, k=7)
    with pytest.raises(ParameterError, match="split mode 'leaky'"):
        kfold_splits(chord_data, mode="leaky")


def test_loudness_normalisation_removes_level_differences(tmp_path, chord_folder):
    quiet = sorted(chord_folder.rglob("*.wav"))[0]
    y, sr = sf.read(quiet)
    sf.write(quiet, 0.01 * y, sr)  # 40 dB quieter
    spec = tiny_spec(loudness_dbfs=-20.0)
    data, _ = load_dataset(chord_folder, spec, cache=tmp_path / "c", progress=False)
    levels = [float(np.median(f)) for f in data.features]
    assert max(levels) - min(levels) < 10  # dB: the 40 dB step is gone
    loud, _ = musemo.load_audio(quiet, sr=TINY_SR)
    clip = subclips(loud, spec)[0]
    assert 20 * np.log10(np.sqrt(np.mean(clip.astype(np.float64) ** 2))) == pytest.approx(
        -20, abs=1
    )
    with pytest.raises(ParameterError, match="loudness_dbfs=5"):
        tiny_spec(loudness_dbfs=5)
