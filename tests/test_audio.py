"""load_audio: formats, channels, resampling, and files that cannot be read."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

import musemo
from musemo import AudioError, ParameterError

SR = 22050


@pytest.fixture
def stereo_tone() -> np.ndarray:
    t = np.arange(SR) / SR
    return np.stack([0.5 * np.sin(2 * np.pi * 440 * t), 0.25 * np.sin(2 * np.pi * 660 * t)], axis=1)


@pytest.mark.parametrize(
    ("ext", "subtype", "tol"),
    [
        ("wav", "FLOAT", 1e-7),
        ("wav", "PCM_16", 1e-4),
        ("flac", "PCM_24", 1e-6),
        ("ogg", "VORBIS", 0.05),
    ],
)
def test_formats_round_trip(tmp_path, stereo_tone, ext, subtype, tol):
    path = tmp_path / f"tone.{ext}"
    sf.write(path, stereo_tone, SR, subtype=subtype)
    y, sr = musemo.load_audio(path, mono=False)
    assert sr == SR and y.dtype == np.float32 and y.shape[0] == 2
    n = min(y.shape[1], len(stereo_tone))
    assert np.abs(y[:, :n] - stereo_tone[:n].T).mean() < tol


def test_mp3_when_libsndfile_supports_it(tmp_path, stereo_tone):
    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile has no MP3 support")
    path = tmp_path / "tone.mp3"
    sf.write(path, stereo_tone, SR, format="MP3")
    y, sr = musemo.load_audio(path)
    assert sr == SR and y.ndim == 1 and np.abs(y).max() > 0.1


def test_mono_is_the_channel_mean(tmp_path, stereo_tone):
    path = tmp_path / "tone.wav"
    sf.write(path, stereo_tone, SR, subtype="FLOAT")
    y, _ = musemo.load_audio(path)
    np.testing.assert_allclose(y, stereo_tone.mean(axis=1), atol=1e-7)


def test_resampling_keeps_the_pitch(tmp_path, stereo_tone):
    path = tmp_path / "tone.wav"
    sf.write(path, stereo_tone[:, 0], SR, subtype="FLOAT")
    y, sr = musemo.load_audio(path, sr=44100)
    assert sr == 44100 and abs(len(y) - 2 * SR) <= 2
    spectrum = np.abs(np.fft.rfft(y))
    assert np.argmax(spectrum) * 44100 / len(y) == pytest.approx(440, abs=2)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such audio file: .*nothing.wav"):
        musemo.load_audio(tmp_path / "nothing.wav")


def test_corrupt_file_is_named(tmp_path):
    path = tmp_path / "broken.wav"
    path.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage that is not audio")
    with pytest.raises(AudioError, match="cannot decode audio file .*broken.wav"):
        musemo.load_audio(path)


def test_text_file_is_named(tmp_path):
    path = tmp_path / "notes.mp3"
    path.write_text("these are not the samples you are looking for\n" * 10)
    with pytest.raises(AudioError, match="notes.mp3"):
        musemo.load_audio(path)


def test_empty_file_is_named(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros((0, 1)), SR)
    with pytest.raises(AudioError, match="empty.wav holds no samples"):
        musemo.load_audio(path)


def test_non_finite_samples_in_a_float_file(tmp_path):
    path = tmp_path / "nan.wav"
    data = np.zeros(100, np.float32)
    data[3] = np.nan
    sf.write(path, data, SR, subtype="FLOAT")
    with pytest.raises(AudioError, match="nan.wav contains NaN"):
        musemo.load_audio(path)


@pytest.mark.parametrize("sr", [0, -1, 44100.5, True])
def test_bad_target_rate(tmp_path, sr):
    with pytest.raises(ParameterError, match="sr="):
        musemo.load_audio(tmp_path / "x.wav", sr=sr)


@pytest.mark.parametrize("channels", [1, 2, 3, 8])
def test_channels_are_mixed_to_their_mean(channels):
    from musemo.audio.files import channel_mean

    block = np.random.default_rng(channels).uniform(-1, 1, (1000, channels)).astype(np.float32)
    mixed = channel_mean(block)
    assert mixed.dtype == np.float32 and mixed.shape == (1000,)
    np.testing.assert_allclose(mixed, block.mean(axis=1), rtol=0, atol=1e-7)
    if channels <= 2:
        np.testing.assert_array_equal(mixed, block.mean(axis=1))
