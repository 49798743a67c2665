"""The built-in synthetic raga data set (musemo.data.synthetic.ragas)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import soundfile as sf

from musemo.data.synthetic import make_builtin_dataset, raga_recording
from musemo.data.synthetic import ragas as datasets
from musemo.data.synthetic.ragas import MOODS, RAGAS
from musemo.errors import ParameterError

SR = 22050


def spectral_centroid(y: np.ndarray, sr: int) -> float:
    """Energy-weighted mean spectral centroid (Hz) over 2048-sample frames."""
    frames = np.lib.stride_tricks.sliding_window_view(y, 2048)[::1024] * np.hanning(2048)
    mag = np.abs(np.fft.rfft(frames, axis=1))
    freqs = np.fft.rfftfreq(2048, 1.0 / sr)
    return float((mag * freqs).sum() / mag.sum())


def spectral_flux(y: np.ndarray) -> float:
    """Mean positive change of the log spectrum between frames: how busy the onsets are."""
    frames = np.lib.stride_tricks.sliding_window_view(y, 1024)[::512] * np.hanning(1024)
    log_mag = np.log(np.abs(np.fft.rfft(frames, axis=1)) + 1e-3)
    return float(np.maximum(np.diff(log_mag, axis=0), 0.0).sum(axis=1).mean())


@pytest.fixture(scope="module")
def eight_second_recordings_by_mood() -> dict[str, list[np.ndarray]]:
    """Two 8 s recordings of every raga at 22.05 kHz, grouped by mood."""
    out: dict[str, list[np.ndarray]] = {m: [] for m in MOODS}
    for name, raga in RAGAS.items():
        for seed in (11, 12):
            out[raga.mood].append(raga_recording(name, seed=seed, sr=SR, seconds=8.0))
    return out


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    """One 1.5 s recording per raga at 8 kHz, written by make_builtin_dataset."""
    root = tmp_path_factory.mktemp("ragas")
    make_builtin_dataset(root, per_raga=2, sr=8000, seconds=1.5, seed=3, progress=False)
    return root


def test_the_catalogue():
    assert set(MOODS) == {"happy", "sad"}
    assert {r.name for r in RAGAS.values() if r.mood == "happy"} == {"bilawal", "khamaj", "yaman"}
    assert {r.name for r in RAGAS.values() if r.mood == "sad"} == {
        "bhairavi",
        "todi",
        "darbari_kanada",
    }
    assert RAGAS["khamaj"].ascent == (0, 2, 4, 5, 7, 9, 11)
    assert RAGAS["khamaj"].descent == (0, 2, 4, 5, 7, 9, 10)
    assert RAGAS["darbari_kanada"].andolan == (3, 8)
    with pytest.raises(AttributeError):  # frozen
        RAGAS["yaman"].mood = "sad"


def test_same_seed_same_recording_other_seed_another():
    a = raga_recording("yaman", seed=5, sr=SR, seconds=3.0)
    b = raga_recording("yaman", seed=5, sr=SR, seconds=3.0)
    c = raga_recording("yaman", seed=6, sr=SR, seconds=3.0)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_shape_dtype_level_and_fades():
    y = raga_recording("Darbari Kanada", seed=0, sr=SR, seconds=2.5)
    assert y.shape == (round(2.5 * SR),) and y.dtype == np.float32
    assert np.isfinite(y).all()
    assert 0.1 < np.abs(y).max() <= 1.0
    assert abs(y[0]) < 1e-3 and abs(y[-1]) < 1e-3
    assert raga_recording("todi", seed=1, sr=16000, seconds=1.0).shape == (16000,)


def test_happy_is_brighter_and_busier_than_sad_on_average(eight_second_recordings_by_mood):
    centroid = {
        m: np.mean([spectral_centroid(y, SR) for y in ys])
        for m, ys in eight_second_recordings_by_mood.items()
    }
    flux = {
        m: np.mean([spectral_flux(y) for y in ys])
        for m, ys in eight_second_recordings_by_mood.items()
    }
    assert centroid["happy"] > 1.15 * centroid["sad"], centroid
    assert flux["happy"] > 1.15 * flux["sad"], flux


def test_loudness_alone_does_not_give_the_mood_away(eight_second_recordings_by_mood):
    rms = {
        m: [20 * np.log10(np.sqrt(np.mean(y.astype(np.float64) ** 2))) for y in ys]
        for m, ys in eight_second_recordings_by_mood.items()
    }
    # The classes' loudness ranges overlap: some sad recording is louder than some happy one.
    assert max(rms["sad"]) > min(rms["happy"])


def test_unknown_raga_names_the_valid_ones():
    with pytest.raises(ParameterError, match="bilawal.*darbari_kanada"):
        raga_recording("malkauns", seed=0)


@pytest.mark.parametrize(
    "kwargs", [{"seed": -1}, {"seed": 1.5}, {"seed": 0, "sr": 100}, {"seed": 0, "seconds": 0}]
)
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ParameterError):
        raga_recording("yaman", **kwargs)


def test_folder_layout_and_manifest(tiny_dataset):
    wavs = sorted(p.relative_to(tiny_dataset).as_posix() for p in tiny_dataset.rglob("*.wav"))
    expected = sorted(f"{r.mood}/{name}_{k}.wav" for name, r in RAGAS.items() for k in (0, 1))
    assert wavs == expected
    with open(tiny_dataset / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["path"], r["label"], r["group"]) for r in sorted(rows, key=lambda r: r["path"])] == [
        (p, p.split("/")[0], p.split("/")[1][:-4]) for p in expected
    ]
    info = sf.info(str(tiny_dataset / "sad" / "todi_1.wav"))
    assert (info.samplerate, info.frames, info.channels, info.subtype) == (8000, 12000, 1, "PCM_16")
    assert "synthetic" in (tiny_dataset / "README.txt").read_text().lower()
    assert not [p for p in tiny_dataset.rglob(".*")]  # no temporary files left


def test_files_hold_the_recording_with_their_own_seed(tiny_dataset):
    y0, sr = sf.read(str(tiny_dataset / "happy" / "khamaj_0.wav"), dtype="float32")
    y1, _ = sf.read(str(tiny_dataset / "happy" / "khamaj_1.wav"), dtype="float32")
    seed0 = datasets._file_seed(3, "khamaj", 0)
    expected = raga_recording("khamaj", seed=seed0, sr=sr, seconds=1.5)
    np.testing.assert_allclose(y0, expected, atol=1.0 / 32768)
    assert not np.allclose(y0, y1)


def test_rerun_keeps_finished_files_and_redoes_broken_ones(tmp_path, monkeypatch):
    make_builtin_dataset(tmp_path, per_raga=1, sr=8000, seconds=1.0, progress=False)
    made = []
    real = datasets.raga_recording

    def counting(raga, **kwargs):
        made.append(raga)
        return real(raga, **kwargs)

    monkeypatch.setattr(datasets, "raga_recording", counting)
    assert make_builtin_dataset(tmp_path, per_raga=1, sr=8000, seconds=1.0, progress=False) == (
        tmp_path
    )
    assert made == []
    (tmp_path / "happy" / "yaman_0.wav").write_bytes(b"RIFF truncated")
    (tmp_path / "sad" / "todi_0.wav").unlink()
    make_builtin_dataset(tmp_path, per_raga=1, sr=8000, seconds=1.0, progress=False)
    assert sorted(made) == ["todi", "yaman"]
    # A different length is a different data set: every file is made again.
    made.clear()
    make_builtin_dataset(tmp_path, per_raga=1, sr=8000, seconds=2.0, progress=False)
    assert len(made) == len(RAGAS)
