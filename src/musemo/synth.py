"""A built-in test recording: a plucked-string phrase over a drone, made from numbers.

No audio ships with musemo; this gives the demo and the tests a realistic,
reproducible signal (harmonics, attacks, decays, silence) at any sample rate.
"""

from __future__ import annotations

import numpy as np

# Raga Yaman's ascent (Sa Re Ga Ma# Pa Dha Ni Sa) in semitones above Sa.
YAMAN = (0, 2, 4, 6, 7, 9, 11, 12)


def _pluck(freq: float, seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Karplus-Strong plucked string with a bright, sitar-like buzz."""
    n = int(seconds * sr)
    period = max(2, int(round(sr / freq)))
    buf = rng.uniform(-1.0, 1.0, period)
    out = np.empty(n)
    for start in range(0, n, period):
        chunk = min(period, n - start)
        out[start : start + chunk] = buf[:chunk]
        buf = 0.996 * 0.5 * (buf + np.roll(buf, -1))
    buzz = np.tanh(3.0 * out) * 0.3
    return (out + buzz) * np.exp(-np.arange(n) / (0.6 * sr))


def demo_recording(
    *, sr: int = 44100, seconds: float = 10.0, tonic: float = 138.6, seed: int = 0
) -> np.ndarray:
    """A mono float32 phrase in raga Yaman with a tanpura-like drone, peak 0.9."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    y = np.zeros(n)
    t = np.arange(n) / sr
    for mult, amp in ((1.0, 0.12), (1.5, 0.06), (2.0, 0.05)):  # Sa, Pa, upper Sa
        y += amp * np.sin(2 * np.pi * tonic * mult * t) * (0.8 + 0.2 * np.sin(2 * np.pi * 0.25 * t))
    note_len = 0.5
    phrase = list(YAMAN) + list(YAMAN[::-1])
    for i, start in enumerate(np.arange(0.25, seconds - note_len, note_len)):
        freq = tonic * 2 ** (phrase[i % len(phrase)] / 12) * 2
        s = int(start * sr)
        note = _pluck(freq, min(1.5, seconds - start), sr, rng)
        y[s : s + len(note)] += 0.5 * note
    y[int(0.9 * n) :] *= np.linspace(1.0, 0.0, n - int(0.9 * n))  # fade out into silence
    return (0.9 * y / np.abs(y).max()).astype(np.float32)
