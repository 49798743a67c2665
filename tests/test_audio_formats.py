"""What libsndfile cannot read, decoded by FFmpeg through PyAV (``musemo[formats]``): AAC
and ALAC in M4A, Opus in WebM, MP3 in MP4, checked against the audio they were made from;
refusals that name the file, and what to install when PyAV is missing."""

from __future__ import annotations

import sys
import tracemalloc

import numpy as np
import pytest
from fixtures_audio import TINY_SR, tiny_spec, write_video_without_audio, write_with_pyav

import musemo
from musemo import AudioError
from musemo.audio import AudioFile
from musemo.data import FeatureCache, scan_folder

pytest.importorskip("av")

SECONDS = 2.0
# file name, codec, sample format handed to the encoder, rate, relative RMS error allowed
# (lossy ones at 256 kbit/s: about a third of the allowance)
FORMATS = [
    ("aac.m4a", "aac", "fltp", 44100, 0.03),
    ("alac.m4a", "alac", "s16p", 44100, 2e-4),  # 16-bit rounding
    ("opus.webm", "libopus", "flt", 48000, 0.03),
    ("mp3.mp4", "libmp3lame", "fltp", 44100, 0.01),
]
MAX_DELAY = 4096  # encoder priming and padding, in samples


def chirps(sr: int, seconds: float = SECONDS) -> np.ndarray:
    """Two rising chirps, one per channel: no period, so the codec's delay is unambiguous."""
    t = np.arange(int(sr * seconds)) / sr
    fade = np.minimum(1.0, np.minimum(t, seconds - t) / 0.05)
    left = 0.5 * np.sin(2 * np.pi * (200 * t + 400 * t**2)) * fade
    right = 0.25 * np.sin(2 * np.pi * (300 * t + 700 * t**2)) * fade
    return np.stack([left, right]).astype(np.float32)


def aligned_error(decoded: np.ndarray, source: np.ndarray) -> tuple[int, float]:
    """The delay of ``decoded`` against ``source`` (both ``(channels, n)``) and the RMS of
    their difference at that delay, relative to the source's."""
    n = source.shape[1]
    head = decoded[0, : n // 2 + MAX_DELAY]
    delay = int(np.argmax(np.correlate(head, source[0, : n // 2], "valid")))
    part = decoded[:, delay : delay + n]
    return delay, float(np.sqrt(np.mean((part - source) ** 2) / np.mean(source**2)))


@pytest.fixture(scope="module")
def encoded(tmp_path_factory) -> dict[str, tuple]:
    folder = tmp_path_factory.mktemp("formats")
    files = {}
    for name, codec, sample_format, sr, tol in FORMATS:
        source = chirps(sr)
        write_with_pyav(folder / name, source, sr, codec, sample_format)
        files[name] = (folder / name, source, sr, tol)
    return files


@pytest.mark.parametrize("name", [f[0] for f in FORMATS])
def test_decoded_as_made(encoded, name):
    path, source, sr, tol = encoded[name]
    y, got_sr = musemo.load_audio(path, mono=False)
    assert got_sr == sr and y.dtype == np.float32 and y.shape[0] == 2
    assert source.shape[1] <= y.shape[1] <= source.shape[1] + MAX_DELAY
    delay, error = aligned_error(y, source)
    assert error < tol, (name, delay, error)
    mono, _ = musemo.load_audio(path)
    np.testing.assert_allclose(mono, y.mean(axis=0), atol=1e-7)


@pytest.mark.parametrize("name", ["aac.m4a", "opus.webm"])
def test_blocks_join_to_the_whole_file(encoded, name):
    path = encoded[name][0]
    whole, _ = musemo.load_audio(path)
    with AudioFile(path) as f:
        blocks = list(f.mono_blocks(frames=1000))
        again = np.concatenate(list(f.mono_blocks(frames=1000)))  # read twice, from the start
    assert all(len(b) == 1000 for b in blocks[:-1]) and 0 < len(blocks[-1]) <= 1000
    np.testing.assert_array_equal(np.concatenate(blocks), whole)
    np.testing.assert_array_equal(again, whole)


def test_resampled(encoded):
    path, source, sr, _ = encoded["alac.m4a"]
    y, got_sr = musemo.load_audio(path, sr=TINY_SR)
    assert got_sr == TINY_SR and abs(len(y) - source.shape[1] * TINY_SR / sr) <= 1


def test_a_folder_of_them_is_a_data_set(tmp_path, encoded):
    for label, name in [("happy", "aac.m4a"), ("happy", "mp3.mp4"), ("sad", "opus.webm")]:
        (tmp_path / label).mkdir(exist_ok=True)
        (tmp_path / label / name).write_bytes(encoded[name][0].read_bytes())
    recordings = scan_folder(tmp_path)
    assert sorted(r.path.name for r in recordings) == ["aac.m4a", "mp3.mp4", "opus.webm"]
    report = FeatureCache(tmp_path / "cache", tiny_spec()).build(recordings, progress=False)
    assert not report.failed and report.computed == 3


def test_a_video_without_audio_is_refused_by_name(tmp_path):
    path = tmp_path / "clip.mp4"
    write_video_without_audio(path)
    with pytest.raises(AudioError, match=r"clip\.mp4.*no audio stream"):
        musemo.load_audio(path)


def test_a_truncated_m4a_is_refused_by_name(tmp_path, encoded):
    data = encoded["aac.m4a"][0].read_bytes()
    path = tmp_path / "cut.m4a"
    path.write_bytes(data[: len(data) // 2])  # the index (moov) was written last: gone
    with pytest.raises(AudioError, match=r"cannot decode audio file .*cut\.m4a.*FFmpeg: "):
        musemo.load_audio(path)


def test_without_pyav_the_error_says_what_to_install(tmp_path, encoded, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` raises ImportError
    with pytest.raises(AudioError, match=r"aac\.m4a.*pip install 'musemo\[formats\]'"):
        musemo.load_audio(encoded["aac.m4a"][0])
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF" + bytes(40))
    with pytest.raises(AudioError, match=r"broken\.wav") as refused:
        musemo.load_audio(broken)
    assert "formats" not in str(refused.value)  # libsndfile's own format: its own reason


@pytest.mark.slow
def test_an_hour_of_opus_in_bounded_memory(tmp_path):
    """An hour (691 MB as float32 at Opus's 48 kHz) decoded block by block: a few at once."""
    sr, seconds = 8000, 3600
    t = np.arange(sr * seconds, dtype=np.float32) / sr
    y = (0.3 * np.sin(2 * np.pi * 440 * t))[None]
    del t
    path = tmp_path / "hour.webm"
    write_with_pyav(path, y, sr, "libopus", "flt")
    del y
    tracemalloc.start()
    with AudioFile(path) as f:
        frames, rate = sum(len(block) for block in f.mono_blocks()), f.samplerate
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert abs(frames - rate * seconds) < rate  # Opus decodes at 48 kHz
    assert peak < 16 * 2**20, peak
