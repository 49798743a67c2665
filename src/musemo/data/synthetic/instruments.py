"""Synthetic instruments made from numbers: a plucked string, a tanpura drone, sympathetic strings.

No audio ships with musemo; these give the demo, the tests and the built-in data set
(:mod:`musemo.datasets`) realistic, reproducible signals (harmonics, attacks, decays, drones,
pitch glides) at any sample rate. Everything is vectorised numpy: no per-sample Python loops.
"""

from __future__ import annotations

import numpy as np

# Raga Yaman's ascent (Sa Re Ga Ma# Pa Dha Ni Sa) in semitones above Sa.
YAMAN = (0, 2, 4, 6, 7, 9, 11, 12)

_MAX_HARMONICS = 96


def pluck(
    freq: float | np.ndarray,
    sr: int,
    rng: np.random.Generator,
    *,
    seconds: float | None = None,
    brightness: float = 0.6,
    decay: float = 1.5,
    buzz: float = 0.3,
    position: float | None = None,
) -> np.ndarray:
    """A plucked string with a sitar-like buzzing bridge (jawari); float64, peak about 1.

    The string is Karplus-Strong in closed form: the delay-line loop with its two-point averaging
    filter is diagonal in the DFT, so harmonic ``j`` of a string of period ``P`` is multiplied by
    ``g * cos(pi j / P)`` once per period. Each period's waveform is one row of a wavetable,
    read with a running phase, so the pitch may glide (meend) without retuning the string.

    ``freq``: Hz, a number (then ``seconds`` sets the length) or a per-sample pitch curve.
    ``brightness`` (0..1): a brighter pluck and slower loss of high harmonics. ``decay``: seconds
    for the fundamental to fall 60 dB. ``buzz``: strength of the jawari, a band of harmonics that
    rings out and sweeps down in pitch as the note decays. ``position``: pluck point along the
    string (0..0.5; random when None), which notches the harmonics it divides.
    """
    if np.ndim(freq) == 0:
        f = np.full(int(round(float(seconds or 0.0) * sr)), float(freq))
    else:
        f = np.asarray(freq, dtype=np.float64)
    n = len(f)
    if n == 0:
        return np.zeros(0)
    f_nom = float(f[0])
    n_harm = int(max(1, min(_MAX_HARMONICS, 0.45 * sr / float(f.max()))))
    table = max(64, 1 << int(np.ceil(np.log2(6 * n_harm))))  # samples per period, oversampled
    cycles = np.cumsum(f) / sr
    phase = np.concatenate(([0.0], cycles[:-1]))
    n_rows = int(cycles[-1]) + 2

    j = np.arange(1, n_harm + 1)
    position = rng.uniform(0.07, 0.2) if position is None else position
    tilt = j ** -(1.6 - 1.1 * brightness)
    spectrum = tilt * (0.15 + np.abs(np.sin(np.pi * j * position)))
    spectrum = spectrum * np.exp(2j * np.pi * rng.uniform(size=n_harm))
    spectrum /= np.sqrt(np.sum(np.abs(spectrum) ** 2) / 2)  # first period's RMS 1
    # Per-period loss: overall g for `decay` at the fundamental, KS averaging filter for the rest.
    g = 10.0 ** (-3.0 / (f_nom * decay))
    stretch = 0.25 + 2.0 * (1.0 - brightness)
    loss = g * np.cos(np.pi * np.minimum(j * f_nom / sr, 0.499)) ** stretch
    k = np.arange(n_rows)[:, None]
    amp = np.exp(k * np.log(loss)[None, :])
    if buzz > 0:
        centre = 1.5 + 0.5 * n_harm * np.exp(-k / (f_nom * rng.uniform(0.3, 0.8)))
        width = 1.5 + 0.08 * n_harm
        amp = amp * (1.0 + 3.0 * buzz * np.exp(-0.5 * ((j[None, :] - centre) / width) ** 2))
    rows = np.zeros((n_rows, table // 2 + 1), dtype=np.complex64)
    rows[:, 1 : n_harm + 1] = amp * spectrum[None, :]
    wave = np.empty((n_rows, table + 1), dtype=np.float32)  # one period a row, wrapped
    wave[:, :table] = np.fft.irfft(rows, n=table, axis=1)
    wave[:, table] = wave[:, 0]
    wave = wave.ravel()
    x = phase * table
    at = x.astype(np.int64)  # row * table + column
    frac = (x - at).astype(np.float32)
    at += at >> int(np.log2(table))  # skip the wrap column of the rows before
    a = wave[at]
    out = (a + (wave[at + 1] - a) * frac).astype(np.float64) * (table / 2)
    # The mizrab's click: a few milliseconds of noise, brighter for a brighter pluck.
    n_click = min(n, int(0.004 * sr))
    out[:n_click] += (
        0.3 * brightness * rng.standard_normal(n_click) * np.linspace(1.0, 0.0, n_click)
    )
    return out


def tanpura(
    n: int,
    sr: int,
    tonic: float,
    rng: np.random.Generator,
    *,
    cycle: float = 4.5,
    beat_hz: float = 0.2,
    brightness: float = 0.55,
) -> np.ndarray:
    """A tanpura-like drone, float64 of length ``n``, peak about 1.

    Four strings plucked in turn, each ringing until it is plucked again: Pa below ``tonic``,
    two strings at ``tonic`` (Sa) detuned by ``beat_hz`` so they beat slowly, and the lower Sa;
    a full round takes ``cycle`` seconds (with a little human jitter) and the jawari buzzes.
    Each string's pluck is made in a few variants and reused: a tanpura is played evenly.
    """
    y = np.zeros(n)
    strings = (tonic * 2 ** (-5 / 12), tonic + beat_hz / 2, tonic - beat_hz / 2, tonic / 2)
    loudness = (0.8, 0.9, 0.9, 1.0)
    ring = 1.08 * cycle + 0.3  # until the string is plucked again
    length = int(round(ring * sr))
    env = release_ramp(length, int(0.3 * sr))
    variants = [
        [
            env
            * pluck(
                f,
                sr,
                rng,
                seconds=ring,
                brightness=brightness,
                decay=rng.uniform(5.0, 8.0),
                buzz=0.8,
                position=rng.uniform(0.1, 0.16),
            )
            for _ in range(2)
        ]
        for f in strings
    ]
    step = cycle / 4
    t = -rng.uniform(0.0, cycle)  # start mid-round: the drone is already sounding
    i = 0
    while t < n / sr:
        start = int(round(t * sr))
        lo, hi = max(0, start), min(n, start + length)
        if hi > lo:
            note = variants[i % 4][int(rng.integers(2))]
            y[lo:hi] += loudness[i % 4] * rng.uniform(0.85, 1.0) * note[lo - start : hi - start]
        t += step * rng.uniform(0.93, 1.07)
        i += 1
    peak = np.abs(y).max()
    return y / peak if peak > 0 else y


def sympathetic(
    y: np.ndarray,
    sr: int,
    freqs,
    rng: np.random.Generator,
    *,
    decay: float = 2.5,
    harmonics: int = 3,
) -> np.ndarray:
    """The ring of sympathetic strings (tarab) tuned to ``freqs`` Hz, driven by the signal ``y``.

    Each string is a bank of lightly damped resonators (its first ``harmonics`` partials,
    60 dB ``decay`` in seconds, each a few cents out of tune) filtering ``y`` in the frequency
    domain; a note rings its strings only when it hits their pitch. Returns float64 like ``y``.
    """
    n = len(y)
    pad = int(decay * sr)  # room for the last notes' ring, so it does not wrap to the start
    size = _fast_len(n + pad)
    spec = np.fft.rfft(y, n=size)
    bin_hz = sr / size
    gain = np.zeros(len(spec), dtype=np.complex128)
    half_bw = 3.0 / (np.pi * decay * np.log(10))  # Hz, Lorentzian half width for a 60 dB decay
    reach = int(40 * half_bw / bin_hz) + 1
    for f0 in freqs:
        for h in range(1, harmonics + 1):
            fc = h * f0 * 2 ** (rng.normal(0, 3) / 1200)
            if fc >= 0.45 * sr:
                break
            centre = int(round(fc / bin_hz))
            lo, hi = max(0, centre - reach), min(len(spec), centre + reach + 1)
            f = np.arange(lo, hi) * bin_hz
            gain[lo:hi] += (1.0 / h) / (1.0 + 1j * (f - fc) / half_bw)
    return np.fft.irfft(spec * gain, n=size)[:n]


def _fast_len(n: int) -> int:
    """The smallest 2**a * 3**b * 5**c >= n: a quick size for numpy's FFT."""
    best = 1 << int(np.ceil(np.log2(max(n, 1))))
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35 * (1 << max(0, int(np.ceil(np.log2(n / p35)))))
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def tilt(y: np.ndarray, sr: int, db_per_octave: float, *, pivot: float = 1000.0) -> np.ndarray:
    """``y`` through a spectral tilt (a microphone or room colour): gain ``db_per_octave`` per
    octave about ``pivot`` Hz, held flat below 50 Hz and above 0.4 ``sr``. Returns float64."""
    if db_per_octave == 0 or len(y) == 0:
        return np.asarray(y, dtype=np.float64)
    size = _fast_len(len(y))
    f = np.clip(np.fft.rfftfreq(size, 1.0 / sr), 50.0, 0.4 * sr)
    gain = 10.0 ** (db_per_octave * np.log2(f / pivot) / 20.0)
    return np.fft.irfft(np.fft.rfft(y, n=size) * gain, n=size)[: len(y)]


def release_ramp(n: int, n_release: int) -> np.ndarray:
    """Ones, then a half-cosine fall to zero over the last ``n_release`` samples."""
    env = np.ones(n)
    r = min(n, max(0, n_release))
    if r:
        env[n - r :] = 0.5 + 0.5 * np.cos(np.linspace(0.0, np.pi, r))
    return env


def fade(y: np.ndarray, sr: int, *, fade_in: float = 0.05, fade_out: float = 0.5) -> np.ndarray:
    """Half-cosine fade in and out (seconds), in place; returns ``y``."""
    n_in = min(len(y), int(fade_in * sr))
    n_out = min(len(y), int(fade_out * sr))
    if n_in:
        y[:n_in] *= 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, n_in))
    if n_out:
        y[len(y) - n_out :] *= 0.5 + 0.5 * np.cos(np.linspace(0.0, np.pi, n_out))
    return y


def demo_recording(
    *, sr: int = 44100, seconds: float = 10.0, tonic: float = 138.6, seed: int = 0
) -> np.ndarray:
    """A mono float32 phrase in raga Yaman with a tanpura-like drone, peak 0.9."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    y = 0.25 * tanpura(n, sr, tonic, rng)
    note_len = 0.5
    phrase = list(YAMAN) + list(YAMAN[::-1])
    for i, start in enumerate(np.arange(0.25, seconds - note_len, note_len)):
        freq = tonic * 2 ** (phrase[i % len(phrase)] / 12) * 2
        s = int(start * sr)
        note = pluck(freq, sr, rng, seconds=min(1.5, seconds - start), decay=2.0)
        y[s : s + len(note)] += 0.5 * note[: n - s]
    y[int(0.9 * n) :] *= np.linspace(1.0, 0.0, n - int(0.9 * n))  # fade out into silence
    peak = np.abs(y).max()
    return (0.9 * y / peak if peak > 0 else y).astype(np.float32)
