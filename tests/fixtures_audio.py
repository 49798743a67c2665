"""Small labelled data sets written to disk for the data and training tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

import musemo
from musemo.data.synthetic.chords import write_chord_set

TINY_SR = 16000


def write_chord_dataset(
    root: Path, *, per_label: int = 6, seconds: float = 4.2, seed: int = 0
) -> Path:
    """``root/<happy|sad>/*.wav``: major or minor triads at random pitch, with a little noise."""
    return write_chord_set(root, per_label=per_label, seconds=seconds, sr=TINY_SR, seed=seed)


TINY_SETTINGS = dict(sample_rate=TINY_SR, n_fft=1024, hop_length=256, n_mels=64, clip_seconds=1.0)
# the same settings as ``musemo train`` options
TINY_SPEC_ARGS = [
    f"--{flag}={TINY_SETTINGS[key]:g}"
    for flag, key in (
        ("sr", "sample_rate"),
        ("n-fft", "n_fft"),
        ("hop-length", "hop_length"),
        ("n-mels", "n_mels"),
        ("clip-seconds", "clip_seconds"),
    )
]


def tiny_spec(**overrides) -> musemo.FeatureSpec:
    """64 mels x 63 frames per 1 s sub-clip: small enough to train in seconds."""
    return musemo.FeatureSpec(**{**TINY_SETTINGS, **overrides})


REGISTERS = {"happy": (1500.0, 3000.0), "sad": (150.0, 300.0)}


def write_register_dataset(
    root: Path, *, per_label: int = 12, seconds: float = 4.2, registers: dict | None = None
) -> Path:
    """An easy set: ``happy`` tones at 1.5-3 kHz, ``sad`` ones at 150-300 Hz (or
    ``registers``: label -> (lowest, highest) Hz)."""
    rng = np.random.default_rng(0)
    t = np.arange(int(TINY_SR * seconds)) / TINY_SR
    for label, (low, high) in (registers or REGISTERS).items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for k in range(per_label):
            y = 0.3 * np.sin(2 * np.pi * rng.uniform(low, high) * t)
            y += 0.01 * rng.standard_normal(len(t))
            sf.write(root / label / f"{label}{k}.wav", y.astype(np.float32), TINY_SR)
    return root


def write_with_pyav(
    path, y: np.ndarray, sr: int, codec: str, sample_format: str, bit_rate: int = 256_000
) -> None:
    """Encode float ``y`` ``(channels, n)`` in ``[-1, 1]`` with PyAV (FFmpeg), container by
    ``path``'s suffix; integer ``sample_format``s are scaled to full range; ``bit_rate``
    for lossy codecs."""
    import av

    layout = {1: "mono", 2: "stereo"}[len(y)]
    planar = sample_format.endswith("p")
    dtype = {"flt": np.float32, "s16": np.int16, "s32": np.int32}[sample_format.rstrip("p")]
    scale = 1.0 if dtype is np.float32 else float(np.iinfo(dtype).max)
    samples = (y * scale).astype(dtype)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=sr, layout=layout)
        stream.bit_rate = bit_rate
        frame = av.AudioFrame.from_ndarray(
            samples if planar else np.ascontiguousarray(samples.T).reshape(1, -1),
            format=sample_format,
            layout=layout,
        )
        frame.sample_rate = sr
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)


def write_video_without_audio(path, frames: int = 10) -> None:
    """A tiny MPEG-4 video with no audio stream."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(frames):
            image = np.full((32, 32, 3), 20 * i, np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
