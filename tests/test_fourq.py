"""`musemo datasets 4q`: the 4Q audio emotion set's own layout to a manifest grouped by
artist, on tiny folders written here in that layout (real MP3 files)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musemo import ParameterError
from musemo.cli import main
from musemo.data import load_recordings
from musemo.data.fourq import prepare_4q

SONGS = [  # (song, artist, quadrant)
    ("MT0000000001", "Gipsy Kings", "Q1"),
    ("MT0000000002", "gipsy kings", "Q1"),  # the same artist, other case
    ("MT0000000003", "Charlie Poole", "Q3"),
    ("MT0000000004", "Dismember", "Q2"),
    ("MT0000000005", "Enya", "Q4"),
    ("MT0000000006", "Nick Drake", "Q3"),
]


def write_4q(root: Path, songs=SONGS, *, metadata: bool = True, extra=(), missing=()) -> Path:
    base = root / "MER_audio_taffc_dataset"
    t = np.arange(8000) / 8000
    for i, (song, _, quadrant) in enumerate([*songs, *extra]):
        if song in missing:
            continue
        (base / quadrant).mkdir(parents=True, exist_ok=True)
        y = 0.3 * np.sin(2 * np.pi * (220 + 40 * i) * t).astype(np.float32)
        sf.write(base / quadrant / f"{song}.mp3", y, 8000, format="MP3")
    if metadata:
        with open(base / "panda_dataset_taffc_metadata.csv", "w", newline="") as f:
            w = csv.writer(f, quoting=csv.QUOTE_ALL)
            w.writerow(["Song", "Artist", "Title", "Quadrant", "PQuad"])
            w.writerows([s, a, f"title {s}", q, 0.7] for s, a, q in songs)
    return root


def test_q1_and_q3_become_happy_and_sad_grouped_by_artist(tmp_path):
    report = prepare_4q(write_4q(tmp_path / "src"), tmp_path / "out")
    assert report.counts == {"happy": 2, "sad": 2}
    assert report.other_quadrants == 2 and not report.unlisted and not report.missing
    recordings = load_recordings(tmp_path / "out")
    assert sorted((r.path.name, r.label) for r in recordings) == [
        ("MT0000000001.mp3", "happy"),
        ("MT0000000002.mp3", "happy"),
        ("MT0000000003.mp3", "sad"),
        ("MT0000000006.mp3", "sad"),
    ]
    groups = {r.path.stem: r.group for r in recordings}
    assert groups["MT0000000001"] == groups["MT0000000002"] == "artist:gipsy kings"
    assert report.artists == 3
    # the audio is the data set's own bytes (a hard link, or a copy across disks)
    src = tmp_path / "src/MER_audio_taffc_dataset/Q1/MT0000000001.mp3"
    assert (tmp_path / "out/happy/MT0000000001.mp3").read_bytes() == src.read_bytes()


def test_all_four_quadrants_and_the_folder_itself(tmp_path):
    write_4q(tmp_path / "src")
    report = prepare_4q(
        tmp_path / "src" / "MER_audio_taffc_dataset",
        tmp_path / "out",
        quadrants=["Q1", "Q2", "Q3", "Q4"],
    )
    assert report.counts == {"happy": 2, "tense": 1, "sad": 2, "calm": 1}
    assert report.other_quadrants == 0


def test_files_the_metadata_does_not_list_and_listed_files_that_are_gone(tmp_path, capsys):
    src = write_4q(tmp_path / "src", extra=[("MT0000000099", "?", "Q1")], missing=("MT0000000006",))
    assert main(["datasets", "4q", str(src), str(tmp_path / "out")]) == 0
    out, err = capsys.readouterr()
    assert "MT0000000099.mp3: not in the metadata file" in err
    assert "missing: MT0000000006" in err
    assert "3 recordings (happy 2, sad 1) by 2 artists" in out
    assert "1 files not in the metadata, 1 listed files missing" in out
    # run again: nothing changes, nothing is copied twice
    assert main(["datasets", "4q", str(src), str(tmp_path / "out")]) == 0


def test_no_metadata_or_not_the_4q_layout(tmp_path, capsys):
    src = write_4q(tmp_path / "src", metadata=False)
    with pytest.raises(ParameterError, match="not panda_dataset_taffc_metadata.csv"):
        prepare_4q(src, tmp_path / "out")
    assert main(["datasets", "4q", str(tmp_path), str(tmp_path / "out")]) == 2
    assert "is not the 4Q data set" in capsys.readouterr().err
    with pytest.raises(ParameterError, match="choose from Q1, Q2, Q3, Q4"):
        prepare_4q(write_4q(tmp_path / "ok"), tmp_path / "out", quadrants=["Q5"])


def test_the_manifest_trains(tmp_path):
    """The written manifest is what load_dataset reads, with MP3 decoding."""
    from musemo.data import load_dataset
    from musemo.features import FeatureSpec

    prepare_4q(write_4q(tmp_path / "src"), tmp_path / "out")
    spec = FeatureSpec(sample_rate=8000, n_fft=256, hop_length=128, n_mels=32, clip_seconds=0.25)
    data, report = load_dataset(tmp_path / "out", spec, cache=tmp_path / "cache", progress=False)
    assert len(data.recordings) == 4 and not report.failed
    assert data.label_names == ("happy", "sad")
