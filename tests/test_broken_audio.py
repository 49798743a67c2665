"""A folder of broken and unusual audio files: each is decoded correctly or refused by
name, and none stops the files beside it (feature cache, one or two processes, and
``musemo infer``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from fixtures_audio import TINY_SR, tiny_spec, write_video_without_audio, write_with_pyav

import musemo
from musemo.data import FeatureCache, Recording, scan_folder

SECONDS = 3.0


def tone(sr: int, seconds: float = SECONDS, channels: int = 1, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    y = amp * np.sin(2 * np.pi * 440 * t)
    return np.repeat(y[:, None], channels, axis=1) if channels > 1 else y


def good_wav(sr: int = TINY_SR) -> bytes:
    import io

    buf = io.BytesIO()
    sf.write(buf, tone(sr), sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def write_corpus(root: Path) -> dict[str, str]:
    """Write ``root/happy/*``; return each file's name -> "decoded" or the refusal's words."""
    d = root / "happy"
    d.mkdir(parents=True)
    expect = {}

    def put(name: str, outcome: str, raw: bytes | None = None, **write) -> None:
        path = d / name
        if raw is not None:
            path.write_bytes(raw)
        else:
            sf.write(path, **write)
        expect[name] = outcome

    put("zero_bytes.wav", "cannot decode", b"")
    put("header_only.wav", "cannot decode", good_wav()[:30])
    put("truncated_data.wav", "decoded", good_wav()[: 44 + 2 * int(TINY_SR * 2.2)])
    put("text_named.mp3", "cannot decode", b"this is not audio at all\n" * 40)
    put("random_bytes.flac", "cannot decode", np.random.default_rng(0).bytes(5000))
    put("wav_named.flac", "decoded", good_wav())
    flac = d / "tmp.flac"
    sf.write(flac, tone(TINY_SR), TINY_SR, format="FLAC")
    put("flac_named.wav", "decoded", flac.read_bytes())
    flac.unlink()
    put("eight_channels.wav", "decoded", data=tone(TINY_SR, channels=8), samplerate=TINY_SR)
    put("pcm24.wav", "decoded", data=tone(TINY_SR), samplerate=TINY_SR, subtype="PCM_24")
    put("pcm8.wav", "decoded", data=tone(TINY_SR), samplerate=TINY_SR, subtype="PCM_U8")
    put("rate8k.wav", "decoded", data=tone(8000), samplerate=8000, subtype="PCM_16")
    put("rate192k.flac", "decoded", data=tone(192000), samplerate=192000, format="FLAC")
    put("silence.wav", "decoded", data=np.zeros(int(TINY_SR * SECONDS)), samplerate=TINY_SR)
    clipped = np.clip(4 * tone(TINY_SR), -1, 1)  # a square-ish wave at full scale
    put("clipping.wav", "decoded", data=clipped, samplerate=TINY_SR, subtype="PCM_16")
    nan = tone(TINY_SR)
    nan[1000] = np.nan
    put("nan.wav", "NaN or infinite", data=nan, samplerate=TINY_SR, subtype="FLOAT")
    put("too_short.wav", "shorter than one", data=tone(TINY_SR, 0.3), samplerate=TINY_SR)
    # what FFmpeg decodes (musemo[formats]): a good M4A, one cut in half, a silent video
    write_with_pyav(d / "aac.m4a", tone(TINY_SR)[None], TINY_SR, "aac", "fltp")
    expect["aac.m4a"] = "decoded"
    put("truncated.m4a", "cannot decode", (d / "aac.m4a").read_bytes()[:3000])
    write_video_without_audio(d / "no_audio.mp4")
    expect["no_audio.mp4"] = "no audio stream"
    # a second label, so the folder is a data set
    (root / "sad").mkdir()
    sf.write(root / "sad" / "fine.wav", tone(TINY_SR), TINY_SR)
    expect["fine.wav"] = "decoded"
    return expect


@pytest.fixture(scope="module")
def broken_folder(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("broken")
    return root, write_corpus(root)


def reference_features(y: np.ndarray) -> np.ndarray:
    return per_clip(y[: TINY_SR * int(SECONDS)].reshape(3, -1))


def per_clip(clips: np.ndarray) -> np.ndarray:
    """Features of 1 s sub-clips, each on its own (as the cache computes them)."""
    return np.stack(musemo.MelExtractor(tiny_spec()).compute_batch(list(clips)))


@pytest.mark.parametrize("workers", [1, 2])
def test_each_file_is_decoded_or_refused_by_name(tmp_path, broken_folder, workers):
    root, expect = broken_folder
    spec = tiny_spec()
    recordings = scan_folder(root)
    assert {r.path.name for r in recordings} == set(expect)
    report = FeatureCache(tmp_path, spec).build(recordings, workers=workers, progress=False)

    refused = {p.name: why for p, why in report.failed}
    assert set(refused) == {n for n, e in expect.items() if e != "decoded"}
    for name, why in refused.items():
        assert name in why and expect[name] in why, (name, why)
    features = {p.name: np.load(f) for p, f in report.entries.items()}
    assert set(features) == {n for n, e in expect.items() if e == "decoded"}
    assert report.computed == len(features)

    clean = reference_features(tone(TINY_SR).astype(np.float32))
    for name in ("wav_named.flac", "flac_named.wav", "eight_channels.wav", "pcm24.wav", "fine.wav"):
        np.testing.assert_allclose(features[name], clean, atol=0.05, err_msg=name)
    # AAC: 1024 samples of encoder delay, so the tone's bands over time, not each frame
    assert features["aac.m4a"].shape == clean.shape
    bands, aac = clean.mean(axis=(0, 2)), features["aac.m4a"].mean(axis=(0, 2))
    tone_bands = bands > bands.max() - 20
    assert np.abs(aac - bands)[tone_bands].max() < 1.0
    # 8-bit, a 2.2 s remnant and other sample rates: the same tone, coarser or shorter
    loud = clean > clean.max() - 20  # 8 bits: the tone's bands as before, a higher noise floor
    assert np.abs(features["pcm8.wav"] - clean)[loud].max() < 1.0
    assert features["truncated_data.wav"].shape[0] == 2  # 2.2 s: two whole 1 s sub-clips
    peak = clean.mean(axis=(0, 2)).argmax()
    for name in ("rate8k.wav", "rate192k.flac", "clipping.wav", "truncated_data.wav"):
        assert features[name].mean(axis=(0, 2)).argmax() == peak, name
    assert np.isfinite(features["silence.wav"]).all()
    assert np.ptp(features["silence.wav"]) == 0  # silence: one floor value, no noise


def test_an_hour_long_recording(tmp_path):
    """One hour at 8 kHz, resampled to 16 kHz: 3600 sub-clips, the last as exact as the first."""
    sr, seconds = 8000, 3600
    y = tone(sr, seconds).astype(np.float32)
    y[-sr:] = tone(sr, 1.0, amp=0.1)  # the last second is quieter
    path = tmp_path / "happy" / "hour.flac"
    path.parent.mkdir()
    sf.write(path, y, sr, format="FLAC", subtype="PCM_16")
    del y
    report = FeatureCache(tmp_path / "cache", tiny_spec()).build(
        [Recording(path, "happy", "hour")], progress=False
    )
    features = np.load(report.entries[path], mmap_mode="r")
    assert features.shape == (3600, *tiny_spec().clip_shape)
    resampled, _ = musemo.load_audio(path, sr=TINY_SR)
    expected = per_clip(resampled[-3 * TINY_SR :].reshape(3, -1))
    np.testing.assert_array_equal(features[-3:], expected)
    assert features[-1].max() < features[-2].max()  # the quiet second is quieter


def test_infer_goes_on_past_bad_files(broken_folder, squeezenet_export):
    root, expect = broken_folder
    folder, _ = squeezenet_export
    model = next(Path(folder).glob("*int8.onnx"))
    files = sorted((root / "happy").iterdir())
    run = subprocess.run(
        [sys.executable, "-m", "musemo.cli", "infer", str(model), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 1, run.stderr  # some failed, none crashed
    *lines, summary = run.stdout.splitlines()
    classified = {Path(line.split(":")[0]).name for line in lines}
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    # infer pads audio shorter than a window (with a warning) and has nothing to say
    # of silence; otherwise it refuses what the cache refuses
    refused = {n for n, e in expect.items() if e != "decoded"} - {"too_short.wav"}
    refused.add("silence.wav")
    assert classified == {p.name for p in files} - refused
    assert len(errors) == len(refused)
    assert summary.startswith(f"{len(lines)} files: ")
    assert summary.endswith(f"; {len(refused)} could not be classified")
    for name in refused:
        assert any(name in line for line in errors), name
