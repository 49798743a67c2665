#!/usr/bin/env python
"""What decoding costs per format: ``musemo.load_audio`` (decode and mix to mono, at the
file's own rate) of one 30 s stereo recording at 44.1 kHz, on one thread.

The built-in phrase is written in each format: by libsndfile (WAV, FLAC, MP3, Ogg Vorbis)
and by PyAV's FFmpeg encoders (AAC and ALAC in M4A, Opus in WebM, MP3 in MP4, WMA), lossy
ones at 192 kbit/s; then each file is decoded in turn, one call of each per round,
medians of ``--repeats`` rounds after two untimed ones.

    python benchmarks/decode.py                 # needs musemo[formats] (PyAV)

Prints a Markdown table and writes ``benchmarks/results/decode.json`` atomically.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np
import soundfile as sf
from cache_scale import cpu_model

from musemo._atomic import write_text
from musemo.audio import AudioFile, load_audio
from musemo.data.synthetic import demo_recording
from musemo.timing import wall_ms_each

SR = 44100
SNDFILE = {  # file name: soundfile's format and subtype
    "pcm16.wav": ("WAV", "PCM_16"),
    "pcm16.flac": ("FLAC", "PCM_16"),
    "libsndfile.mp3": ("MP3", "MPEG_LAYER_III"),
    "vorbis.ogg": ("OGG", "VORBIS"),
}
FFMPEG = {  # file name: codec, sample format, rate
    "aac.m4a": ("aac", "fltp", SR),
    "alac.m4a": ("alac", "s16p", SR),
    "opus.webm": ("libopus", "flt", 48000),
    "mp3-in.mp4": ("libmp3lame", "fltp", SR),
    "wma.wma": ("wmav2", "fltp", SR),
}


def stereo(seconds: float) -> np.ndarray:
    """The built-in phrase, ``(2, n)``: the right channel a little quieter and later."""
    y = demo_recording(sr=SR, seconds=seconds)
    return np.stack([y, 0.8 * np.roll(y, 441)]).astype(np.float32)


def encode(path: Path, y: np.ndarray, codec: str, sample_format: str, sr: int) -> None:
    """``y`` (float, ``(2, n)`` at ``SR``) encoded by FFmpeg at 192 kbit/s."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=sr, layout="stereo")
        stream.bit_rate = 192_000
        resampler = av.AudioResampler(format=sample_format, layout="stereo", rate=sr)
        frame = av.AudioFrame.from_ndarray(y, format="fltp", layout="stereo")
        frame.sample_rate = SR
        for converted in [*resampler.resample(frame), *resampler.resample(None)]:
            for packet in stream.encode(converted):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def write_files(folder: Path, seconds: float) -> list[Path]:
    y = stereo(seconds)
    for name, (fmt, subtype) in SNDFILE.items():
        sf.write(folder / name, y.T, SR, format=fmt, subtype=subtype)
    for name, (codec, sample_format, sr) in FFMPEG.items():
        encode(folder / name, y, codec, sample_format, sr)
    return [folder / name for name in [*SNDFILE, *FFMPEG]]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--json", type=Path, default=Path("benchmarks/results/decode.json"))
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        files = write_files(Path(tmp), args.seconds)
        times = wall_ms_each(
            {f.name: (lambda f=f: load_audio(f)) for f in files}, repeats=args.repeats, warmup=2
        )
        rows = []
        for f in files:
            with AudioFile(f) as opened:
                decoder, sr = opened.decoder, opened.samplerate
            rows.append({"file": f.name, "decoder": decoder, "sample_rate": sr,
                         "kb": f.stat().st_size / 1024, **times[f.name]})  # fmt: skip
    print(f"| {args.seconds:g} s stereo, 44.1 kHz | decoder | file kB | ms, median of "
          f"{args.repeats} | p95 |\n|---|---|---|---|---|")  # fmt: skip
    for r in rows:
        print(f"| {r['file']} | {r['decoder']} | {r['kb']:.0f} | {r['median']:.1f} | "
              f"{r['p95']:.1f} |")  # fmt: skip
    result = {"cpu": cpu_model(), "seconds": args.seconds,
              "repeats": args.repeats, "rows": rows}  # fmt: skip
    write_text(args.json, json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
