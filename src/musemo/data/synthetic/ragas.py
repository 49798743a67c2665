"""The built-in data set: synthetic sitar recordings of happy and sad ragas.

THIS DATA SET IS SYNTHETIC. Every recording is computed from numbers by a model we wrote: a
plucked string with a buzzing bridge, sympathetic strings and a tanpura drone
(:mod:`musemo.synth`), playing phrases from each raga's ascent, descent and pakad with meend
(pitch glides) and andolan (slow oscillation). It lets the whole pipeline (files, labels,
groups, features, training, export) run and be tested with no download. It is not musical
truth: the mood cues are the ones programmed here (happy: faster, brighter, higher, more
energetic; sad: slower, lower, softer, more ornamented, with overlap between them), so a model
that learns this set learns these rules, not how people hear ragas. Use recordings of real
performances, labelled by listeners, for any claim about music.

Happy ragas: Bilawal, Khamaj, Yaman. Sad ragas: Bhairavi, Todi, Darbari Kanada.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from ..._atomic import atomic_path, write_text
from ..._checks import check_int, is_number
from ..._progress import progress_bar
from ...errors import ParameterError
from ..recordings import write_manifest
from .instruments import fade, pluck, release_ramp, sympathetic, tanpura, tilt

MOODS = ("happy", "sad")


@dataclass(frozen=True)
class Raga:
    """A raga as the synthesiser plays it.

    ``ascent`` / ``descent``: the notes used going up / coming down, semitones above Sa (0-11,
    listed low to high). ``pakad``: the characteristic phrase, semitones relative to the middle
    Sa (negative: lower octave). ``vadi`` / ``samvadi``: the most important notes (phrases rest
    on them). ``andolan``: notes held with a slow oscillation. ``tempo`` / ``register``: the
    raga's own pace (a factor) and shift of register (semitones) on top of its mood's.
    """

    name: str
    title: str
    mood: str
    ascent: tuple[int, ...]
    descent: tuple[int, ...]
    pakad: tuple[int, ...]
    vadi: int
    samvadi: int
    andolan: tuple[int, ...] = ()
    tempo: float = 1.0
    register: float = 0.0


RAGAS: dict[str, Raga] = {
    r.name: r
    for r in (
        Raga(
            "bilawal", "Bilawal", "happy",
            ascent=(0, 2, 4, 5, 7, 9, 11), descent=(0, 2, 4, 5, 7, 9, 11),
            pakad=(4, 2, 4, 7, 9, 11, 12, 9, 7, 5, 4, 5, 2, 0), vadi=9, samvadi=4,
        ),
        Raga(
            "khamaj", "Khamaj", "happy",
            ascent=(0, 2, 4, 5, 7, 9, 11), descent=(0, 2, 4, 5, 7, 9, 10),
            pakad=(10, 9, 5, 7, 9, 5, 4, 2, 0), vadi=4, samvadi=10,
        ),
        Raga(
            "yaman", "Yaman", "happy",
            ascent=(0, 2, 4, 6, 7, 9, 11), descent=(0, 2, 4, 6, 7, 9, 11),
            pakad=(-1, 2, 4, 2, 0, 7, 6, 4, 2, 0), vadi=4, samvadi=11,
        ),
        Raga(
            "bhairavi", "Bhairavi", "sad",
            ascent=(0, 1, 3, 5, 7, 8, 10), descent=(0, 1, 3, 5, 7, 8, 10),
            pakad=(3, 5, 8, 7, 5, 3, 1, 0), vadi=5, samvadi=0,
        ),
        Raga(
            "todi", "Todi", "sad",
            ascent=(0, 1, 3, 6, 7, 8, 11), descent=(0, 1, 3, 6, 7, 8, 11),
            pakad=(-4, -1, 0, 1, 3, 1, 0, 1, 3, 6, 3, 1, 0), vadi=8, samvadi=3, andolan=(1, 3),
        ),
        Raga(
            "darbari_kanada", "Darbari Kanada", "sad",
            ascent=(0, 2, 3, 5, 7, 8, 10), descent=(0, 2, 3, 5, 7, 8, 10),
            pakad=(3, 5, 2, 0, -2, 0, 2, 0, -4, -2, -5), vadi=2, samvadi=7, andolan=(3, 8),
            tempo=0.8, register=-4.0,
        ),
    )
}  # fmt: skip

_LOW, _HIGH = -7, 26  # the sitar's playable range, semitones from the middle Sa


@dataclass(frozen=True)
class _Style:
    """One performance's settings, drawn from the raga's mood with plenty of spread."""

    tonic: float  # Hz, the middle Sa
    tempo: float  # notes per second at the start
    accel: float  # tempo factor reached at the end
    centre: float  # register, semitones above the middle Sa
    brightness: float
    decay: float  # seconds, 60 dB
    buzz: float
    loudness: float  # mean stroke strength
    spread: float  # stroke strength varies by up to this fraction
    drone: float  # drone level against the sitar
    meend: float  # chance a note is reached by a glide, not a new stroke
    kan: float  # chance of a grace note from above
    chikari: float  # chance of a rhythmic drone-string stroke after a note
    rest: float  # chance of a pause after a phrase
    hold: float  # length of phrase-ending notes, beats
    tilt: float  # the recording chain's spectral tilt, dB per octave about 1 kHz
    peak_db: float  # the recording's peak level


def _style(raga: Raga, rng: np.random.Generator) -> _Style:
    u = rng.uniform
    if raga.mood == "happy":
        tempo, accel, centre = np.exp(rng.normal(np.log(2.9), 0.4)), u(1.0, 1.35), u(4, 17)
        brightness, decay, buzz = u(0.4, 0.9), u(1.0, 2.4), u(0.2, 0.7)
        loudness, spread, drone = u(0.7, 1.0), u(0.1, 0.3), u(0.1, 0.4)
        meend, kan, rest, hold = u(0.05, 0.3), u(0.05, 0.3), u(0.05, 0.25), u(1.5, 3.0)
        chikari = u(0.1, 0.5) if rng.random() < 0.7 else 0.0
        peak_db = -6.5 + u(-6.0, 6.0)
        if rng.random() < 0.25:  # an alap: slow, unmetred, no chikari
            tempo, hold, meend, chikari, accel = 0.55 * tempo, 1.5 * hold, 2 * meend, 0.0, 1.0
    else:
        tempo, accel, centre = np.exp(rng.normal(np.log(2.1), 0.4)), u(0.9, 1.15), u(-1, 12)
        brightness, decay, buzz = u(0.25, 0.75), u(1.6, 3.2), u(0.15, 0.65)
        loudness, spread, drone = u(0.45, 0.85), u(0.2, 0.45), u(0.15, 0.5)
        meend, kan, rest, hold = u(0.25, 0.55), u(0.1, 0.35), u(0.1, 0.35), u(2.0, 4.5)
        chikari = u(0.05, 0.2) if rng.random() < 0.2 else 0.0
        peak_db = -9.5 + u(-6.0, 6.0)
        if rng.random() < 0.25:  # a gat: metred, quicker, some chikari
            tempo, hold, meend, chikari = 1.7 * tempo, 0.6 * hold, 0.5 * meend, u(0.05, 0.3)
    return _Style(
        tonic=138.6 * 2 ** (u(-2.0, 2.0) / 12),
        tempo=float(np.clip(tempo * raga.tempo, 0.7, 9.0)),
        accel=accel,
        centre=centre + raga.register,
        brightness=brightness,
        decay=decay,
        buzz=buzz,
        loudness=loudness,
        spread=spread,
        drone=drone,
        meend=min(meend, 0.8),
        kan=kan,
        chikari=chikari,
        rest=rest,
        hold=hold,
        tilt=u(-2.5, 2.0),
        peak_db=peak_db,
    )


@dataclass
class _Note:
    start: float  # seconds
    pitch: int  # semitones from the middle Sa
    stroke: bool  # plucked (True) or reached by meend from the note before
    amp: float = 1.0
    andolan: bool = False
    kan: bool = False


def _notes(raga: Raga, style: _Style, seconds: float, rng: np.random.Generator) -> list[_Note]:
    """The melody: phrases (runs, the pakad, turns, resting notes) until ``seconds``."""
    lo = int(max(_LOW, np.floor(style.centre - 8)))
    hi = int(min(_HIGH, np.ceil(style.centre + 8)))
    up = [s for s in range(lo, hi + 1) if s % 12 in raga.ascent]
    down = [s for s in range(lo, hi + 1) if s % 12 in raga.descent]
    both = sorted(set(up) | set(down))
    rests = [s for s in both if s % 12 in (0, raga.vadi, raga.samvadi, *raga.andolan)]
    happy = raga.mood == "happy"
    kinds = ("run", "pakad", "turn", "rest")
    weights = (0.4, 0.15, 0.35, 0.1) if happy else (0.3, 0.2, 0.15, 0.35)

    notes: list[_Note] = []
    t = rng.uniform(0.2, 1.2)  # the drone alone first
    cur = min(rests, key=lambda s: abs(s - style.centre))

    def beat() -> float:
        return 1.0 / (style.tempo * (1.0 + (style.accel - 1.0) * min(1.0, t / seconds)))

    while t < seconds:
        kind = kinds[rng.choice(4, p=weights)]
        if kind == "run":
            target = int(rng.choice([s for s in both if s != cur]))
            scale = up if target > cur else down
            path = [s for s in scale if min(cur, target) < s < max(cur, target)]
            pitches = (path if target > cur else path[::-1]) + [target]
        elif kind == "pakad":
            shift = 12 * round((style.centre - float(np.mean(raga.pakad))) / 12)
            pitches = [int(np.clip(p + shift, _LOW, _HIGH)) for p in raga.pakad]
        elif kind == "turn":
            i = both.index(min(both, key=lambda s: abs(s - cur)))
            steps = ([0, 1, 2, 1, 0], [0, 1, -1, 0], [0, -1, 1, 2], [1, 0, -1, 0])
            pattern = steps[rng.integers(len(steps))]
            pitches = [both[int(np.clip(i + d, 0, len(both) - 1))] for d in pattern]
        else:
            target = min(rests, key=lambda s: abs(s - cur) + rng.uniform(0, 6))
            pitches = [target]
        beats = [0.5 if happy and rng.random() < 0.3 else 1.0 for _ in pitches]
        beats[-1] = style.hold * rng.uniform(0.7, 1.3) * (2.0 if kind == "rest" else 1.0)
        prev = cur
        for k, (p, b) in enumerate(zip(pitches, beats)):
            glide = p != prev and abs(p - prev) <= 5 and rng.random() < style.meend
            strength = style.loudness * (1.0 - style.spread * rng.random())
            notes.append(
                _Note(
                    start=t,
                    pitch=int(p),
                    stroke=not glide or not notes,
                    amp=strength * (1.15 if k == 0 else 1.0),
                    andolan=p % 12 in raga.andolan and b >= 1.0,
                    kan=rng.random() < style.kan,
                )
            )
            t += b * beat() * rng.uniform(0.9, 1.1)
            prev = p
        cur = pitches[-1]
        if rng.random() < style.rest:
            t += rng.uniform(1.0, 3.0) * beat()
    return notes


def _melody(
    notes: list[_Note], style: _Style, raga: Raga, n: int, sr: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Render the notes on the main string (one stroke silences the last) and chikari strokes."""
    y = np.zeros(n)
    chik = np.zeros(n)
    starts = [i for i, note in enumerate(notes) if note.stroke]
    both = sorted(set(raga.ascent) | set(raga.descent))
    for a, b in zip(starts, starts[1:] + [len(notes)]):
        stroke = notes[a:b]
        s0 = int(stroke[0].start * sr)
        if s0 >= n:
            break
        next_start = notes[b].start if b < len(notes) else n / sr
        end = min(n, int(min(next_start + 0.03, stroke[0].start + 1.3 * style.decay) * sr))
        if end <= s0:
            continue
        curve = np.empty(end - s0)
        edges = [int(note.start * sr) - s0 for note in stroke] + [end - s0]
        for i, note in enumerate(stroke):
            a_i, b_i = max(0, edges[i]), min(len(curve), edges[i + 1])
            if b_i <= a_i:
                continue
            seg = np.full(b_i - a_i, float(note.pitch))
            t = np.arange(b_i - a_i) / sr
            if note.andolan:  # slow swing down from the note and back
                depth, rate = rng.uniform(0.3, 0.6), rng.uniform(0.5, 1.0)
                seg -= depth * (0.5 - 0.5 * np.cos(2 * np.pi * rate * t))
            if i + 1 < len(stroke):  # meend into the next note
                g = min(len(seg), int(rng.uniform(0.3, 0.7) * len(seg)))
                u = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, g, endpoint=False))
                seg[len(seg) - g :] += (stroke[i + 1].pitch - note.pitch) * u
            curve[a_i:b_i] = seg
        first = stroke[0]
        if first.kan:  # a grace note from the next note above, then a quick slide down
            above = [12 * (first.pitch // 12) + s for s in both + [12]]
            grace = min([s for s in above if s > first.pitch] or [first.pitch + 1])
            k1, k2 = int(rng.uniform(0.02, 0.05) * sr), int(0.015 * sr)
            k1, k2 = min(k1, len(curve)), min(k2, max(0, len(curve) - k1))
            curve[:k1] = grace
            curve[k1 : k1 + k2] = grace + (first.pitch - grace) * np.linspace(0, 1, k2)
        freq = style.tonic * 2.0 ** (curve / 12.0)
        note = pluck(
            freq,
            sr,
            rng,
            brightness=float(np.clip(style.brightness + rng.normal(0, 0.05), 0.05, 0.95)),
            decay=style.decay,
            buzz=style.buzz,
        )
        y[s0:end] += first.amp * note * release_ramp(len(note), int(0.03 * sr))
        if style.chikari and rng.random() < style.chikari:  # drone strings struck after a note
            c0 = int((first.start + 0.5 * (next_start - first.start)) * sr)
            length = min(n - c0, int(0.6 * sr))
            if length > 0:
                for f in (2 * style.tonic, 4 * style.tonic):
                    chik[c0 : c0 + length] += pluck(
                        f, sr, rng, seconds=length / sr, brightness=0.8, decay=0.5, buzz=0.5
                    )
    return y, chik


def _canonical(raga: str) -> Raga:
    key = str(raga).strip().lower().replace(" ", "_").replace("-", "_")
    if key not in RAGAS:
        raise ParameterError(f"raga={raga!r}: unknown; valid ragas are {', '.join(RAGAS)}")
    return RAGAS[key]


def raga_recording(raga: str, *, seed: int, sr: int = 44100, seconds: float = 30.0) -> np.ndarray:
    """A synthetic sitar recording of ``raga`` (a key of :data:`RAGAS`): mono float32.

    Deterministic for a given ``(raga, seed, sr, seconds)``; tempo, register, loudness,
    brightness and ornaments vary with the seed. Peak-normalised to a random level
    (-13 to -1 dBFS), with a short fade in and out.
    """
    info = _canonical(raga)
    seed = check_int("seed", seed, 0)
    sr = check_int("sr", sr, 8000)
    if not is_number(seconds) or seconds <= 0:
        raise ParameterError(f"seconds={seconds!r}: must be a positive number")
    rng = np.random.default_rng([seed, zlib.crc32(info.name.encode())])
    style = _style(info, rng)
    n = int(round(seconds * sr))
    notes = _notes(info, style, n / sr, rng)
    y, chik = _melody(notes, style, info, n, sr, rng)
    tarab = [style.tonic * 2 ** ((pc + 12) / 12) for pc in sorted(set(info.ascent + info.descent))]
    y += 0.25 * sympathetic(y, sr, tarab + [4 * style.tonic], rng, decay=rng.uniform(2.0, 3.5))
    y += 0.12 * style.loudness * chik
    rms = np.sqrt(np.mean(y**2)) if n else 0.0
    drone = tanpura(n, sr, style.tonic, rng, cycle=4.8 / style.tempo**0.25)
    y += (style.drone * 4.0 * max(rms, 0.05)) * drone / max(np.sqrt(np.mean(drone**2)), 1e-9)
    y = tilt(y, sr, style.tilt)
    fade(y, sr, fade_in=0.05, fade_out=0.3)
    peak = np.abs(y).max() if n else 0.0
    if peak > 0:
        y *= 10 ** (style.peak_db / 20) / peak
    return y.astype(np.float32)


def _file_seed(seed: int, raga: str, k: int) -> int:
    ss = np.random.SeedSequence([seed, zlib.crc32(raga.encode()), k])
    return int(ss.generate_state(1, dtype=np.uint32)[0])


_README = """\
musemo built-in data set: SYNTHETIC sitar recordings of ragas
=============================================================

Every file here was computed by musemo.data.synthetic.make_builtin_dataset, not recorded.
It exists to show the pipeline working end to end with no download. It is NOT musical truth:
the differences between the moods (happy: faster, brighter, higher, more energetic; sad:
slower, lower, softer, more ornamented) were programmed, so a model trained on it learns
those rules, not how people hear ragas. Do not report results on it as music emotion
recognition results.

Layout: <mood>/<raga>_<k>.wav ({per_raga} per raga, {seconds:g} s, {sr} Hz, 16-bit mono).
Happy: {happy}. Sad: {sad}.
manifest.csv: path (relative to this folder), label (the mood), group (the recording: keep
all sub-clips of one group on the same side of a train/test split).
Made with seed={seed}; rerunning with the same settings gives the same files.
"""


def make_builtin_dataset(
    root: str | os.PathLike,
    *,
    per_raga: int = 4,
    sr: int = 44100,
    seconds: float = 30.0,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Write the synthetic raga set under ``root`` and return ``root`` as a Path.

    Files: ``root/<mood>/<raga>_<k>.wav`` (k = 0 .. per_raga-1, 16-bit PCM, each with its own
    seed derived from ``seed``, the raga and k), ``root/manifest.csv`` (``path,label,group``;
    group = file stem) and ``root/README.txt`` (says the set is synthetic). Files already there
    with the right sample rate and length are kept, so a rerun is cheap. Writes are atomic.
    """
    per_raga = check_int("per_raga", per_raga, 1)
    seed = check_int("seed", seed, 0)
    sr = check_int("sr", sr, 8000)
    if not is_number(seconds) or seconds <= 0:
        raise ParameterError(f"seconds={seconds!r}: must be a positive number")
    root = Path(root)
    n = int(round(seconds * sr))
    jobs = [
        (r, k) for mood in MOODS for r in RAGAS.values() if r.mood == mood for k in range(per_raga)
    ]
    rows = []
    for raga, k in progress_bar(jobs, desc="built-in ragas", unit="file", show=progress):
        rel = Path(raga.mood) / f"{raga.name}_{k}.wav"
        path = root / rel
        if not _is_complete(path, sr, n):
            y = raga_recording(
                raga.name, seed=_file_seed(seed, raga.name, k), sr=sr, seconds=seconds
            )
            with atomic_path(path) as tmp:
                sf.write(tmp, y, sr, subtype="PCM_16", format="WAV")
        rows.append((rel.as_posix(), raga.mood, path.stem))
    write_manifest(root, rows)
    titles = {m: ", ".join(r.title for r in RAGAS.values() if r.mood == m) for m in MOODS}
    readme = _README.format(
        per_raga=per_raga,
        seconds=seconds,
        sr=sr,
        seed=seed,
        happy=titles["happy"],
        sad=titles["sad"],
    )
    write_text(root / "README.txt", readme)
    return root


def _is_complete(path: Path, sr: int, n: int) -> bool:
    try:
        info = sf.info(str(path))
    except (OSError, RuntimeError, sf.LibsndfileError):
        return False
    return info.samplerate == sr and info.frames == n and info.channels == 1
