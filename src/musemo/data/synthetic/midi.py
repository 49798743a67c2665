"""Render labelled MIDI files to audio with FluidSynth (for the EMOPIA set, among others).

Each MIDI file is given one General MIDI instrument on every non-drum channel (104, Sitar, by
default; rewritten with mido), rendered by the ``fluidsynth`` command line with a General MIDI
soundfont, trimmed to the MIDI's length plus a short release (faded out over it), mixed to mono
and written atomically to ``out_dir/<label>/<stem>.wav`` with a ``manifest.csv``
(``path,label,group``). Levels are kept as rendered (no normalisation), so loudness
differences between pieces survive.

Needs mido (``pip install mido``) and, from Debian/Ubuntu, the packages ``fluidsynth`` and
``fluid-soundfont-gm`` (``apt-get install --no-install-recommends fluidsynth
fluid-soundfont-gm``).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import tempfile
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import soundfile as sf

from ..._atomic import atomic_path
from ..._checks import check_int, is_number
from ...errors import MissingDependencyError, ParameterError
from ..pool import for_each
from ..recordings import write_manifest

SITAR = 104  # General MIDI program 105, counted from 0
DRUM_CHANNEL = 9  # General MIDI channel 10, counted from 0
MIDI_SUFFIXES = (".mid", ".midi")
SOUNDFONT_PLACES = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",  # Debian/Ubuntu fluid-soundfont-gm
    "/usr/share/soundfonts/FluidR3_GM.sf2",  # Fedora, Arch
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/default.sf2",
    "/usr/share/sounds/sf2/TimGM6mb.sf2",  # Debian timgm6mb-soundfont
    "/usr/local/share/soundfonts/default.sf2",
    "/opt/homebrew/share/soundfonts/default.sf2",
)

Labeler = Callable[[str], "tuple[str, str] | None"]


class RenderToolError(RuntimeError):
    """FluidSynth or a soundfont is missing; the message says what to install."""


class RenderResult(NamedTuple):
    """What :func:`render_midi` did.

    ``root``: the output folder. ``written``: files rendered now. ``existing``: files already
    there and kept. ``unlabelled``: MIDI files the labeler passed over (e.g. EMOPIA Q2, Q4).
    ``skipped``: ``(file name, reason)`` for MIDI files that could not be parsed or rendered.
    ``rescaled``: names of renders scaled down to a peak of 0.99 because they would clip.
    """

    root: Path
    written: int
    existing: int
    unlabelled: int
    skipped: list[tuple[str, str]]
    rescaled: list[str]


_EMOPIA = re.compile(r"^Q([1-4])_(.+)_(\d+)$")


def emopia_label(stem: str) -> tuple[str, str] | None:
    """EMOPIA names ``Q<k>_<song-id>_<clip>``: Q1 -> ("happy", song id), Q3 -> ("sad", song id).

    Q2 (tense) and Q4 (calm), and names of any other form, give None (not used).
    """
    m = _EMOPIA.match(stem)
    if not m or m.group(1) not in ("1", "3"):
        return None
    return ("happy" if m.group(1) == "1" else "sad", m.group(2))


def find_fluidsynth() -> str:
    """The path of the ``fluidsynth`` program, or :class:`RenderToolError` saying how to get it."""
    exe = shutil.which("fluidsynth")
    if exe is None:
        raise RenderToolError(
            "the fluidsynth program is not on PATH; install the Debian/Ubuntu package "
            "'fluidsynth' (apt-get install --no-install-recommends fluidsynth)"
        )
    return exe


def find_soundfont(soundfont: str | os.PathLike | None = None) -> Path:
    """``soundfont`` if given (it must exist), else the first General MIDI soundfont found in
    the usual places (Debian's ``fluid-soundfont-gm`` first, then the one in ``pretty_midi``)."""
    if soundfont is not None:
        path = Path(soundfont)
        if not path.is_file():
            raise RenderToolError(f"soundfont {path} does not exist")
        return path
    places = [Path(p) for p in SOUNDFONT_PLACES]
    try:
        import importlib.util

        spec = importlib.util.find_spec("pretty_midi")
        if spec is not None and spec.origin:
            places.append(Path(spec.origin).parent / "TimGM6mb.sf2")
    except (ImportError, ValueError):
        pass
    for path in places:
        if path.is_file():
            return path
    raise RenderToolError(
        "no General MIDI soundfont found; install the Debian/Ubuntu package 'fluid-soundfont-gm' "
        "(apt-get install --no-install-recommends fluid-soundfont-gm) or pass soundfont=PATH "
        f"(looked in {', '.join(map(str, places))})"
    )


def _import_mido():
    try:
        import mido
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError("rendering MIDI needs mido", "train") from exc
    return mido


def set_program(midi, program: int):
    """A copy of the mido ``MidiFile`` with every non-drum channel on GM ``program`` (0-127).

    Existing program changes are rewritten, bank selects are set to bank 0, and a program change
    at time 0 is put at the head of the first track that uses each channel.
    """
    mido = _import_mido()
    program = check_int("program", program, 0)
    if program > 127:
        raise ParameterError(f"program={program}: must be 0..127 (General MIDI, from 0)")
    out = mido.MidiFile(type=midi.type, ticks_per_beat=midi.ticks_per_beat, charset=midi.charset)
    seen: set[int] = set()
    for track in midi.tracks:
        new = mido.MidiTrack()
        used: list[int] = []
        for msg in track:
            channel = None if msg.is_meta else getattr(msg, "channel", None)
            if channel is None or channel == DRUM_CHANNEL:
                new.append(msg)
                continue
            if msg.type == "program_change":
                msg = msg.copy(program=program)
            elif msg.type == "control_change" and msg.control in (0, 32):  # bank select
                msg = msg.copy(value=0)
            if channel not in seen and channel not in used:
                used.append(channel)
            new.append(msg)
        head = [mido.Message("program_change", channel=c, program=program, time=0) for c in used]
        new[0:0] = head
        seen.update(used)
        out.tracks.append(new)
    return out


def _render_one(
    name: str,
    data: bytes,
    out_path: str,
    program: int | None,
    fluidsynth: str,
    soundfont: str,
    sr: int,
    release: float,
    gain: float,
    subtype: str,
) -> tuple[str, str]:
    """Render one MIDI file; ``("written", "")``, ``("rescaled", "")`` or ``("skipped", why)``."""
    mido = _import_mido()
    try:
        midi = mido.MidiFile(file=io.BytesIO(data))
        length = float(midi.length)
        if program is not None:
            midi = set_program(midi, program)
    except Exception as exc:  # mido raises many kinds for a broken file
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return "skipped", f"cannot parse MIDI ({detail})"
    if not any(msg.type == "note_on" and msg.velocity > 0 for t in midi.tracks for msg in t):
        return "skipped", "no notes"
    with tempfile.TemporaryDirectory(prefix="musemo-midi-") as tmp:
        mid_path, wav_path = Path(tmp) / "in.mid", Path(tmp) / "out.wav"
        midi.save(str(mid_path))
        cmd = [
            fluidsynth, "-ni", "-q", "-g", f"{gain:g}", "-r", str(sr),
            "-o", "synth.dynamic-sample-loading=1", "-O", "float", "-T", "wav",
            "-F", str(wav_path), str(soundfont), str(mid_path),
        ]  # fmt: skip
        try:
            proc = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
                timeout=120 + 4 * length,
            )
        except subprocess.TimeoutExpired:
            return "skipped", f"fluidsynth took over {120 + 4 * length:.0f} s"
        if proc.returncode != 0 or not wav_path.is_file():
            why = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            return "skipped", f"fluidsynth failed ({proc.returncode}): {why[0]}"
        try:
            y, got_sr = sf.read(str(wav_path), dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as exc:
            return "skipped", f"fluidsynth wrote no readable audio: {exc}"
    y = y.mean(axis=1)
    n = int(round((length + release) * got_sr))
    y = np.pad(y[:n], (0, max(0, n - len(y))))
    n_fade = min(n, int(round(release * got_sr)))
    if n_fade:
        y[n - n_fade :] *= 0.5 + 0.5 * np.cos(np.linspace(0.0, np.pi, n_fade))
    status = "written"
    peak = float(np.abs(y).max()) if n else 0.0
    if peak > 0.999 and subtype != "FLOAT":
        y *= 0.99 / peak
        status = "rescaled"
    with atomic_path(out_path) as tmp_out:
        sf.write(str(tmp_out), y, got_sr, subtype=subtype, format="WAV")
    return status, ""


def _sources(src: Path) -> list[tuple[str, str, Callable[[], bytes]]]:
    """``(name, stem, read)`` for each MIDI file in a folder (recursively) or a zip."""
    out = []
    if src.is_dir():
        for p in sorted(src.rglob("*")):
            if p.is_file() and p.suffix.lower() in MIDI_SUFFIXES and not p.name.startswith("."):
                out.append((str(p.relative_to(src)), p.stem, p.read_bytes))
    elif src.is_file() and zipfile.is_zipfile(src):
        with zipfile.ZipFile(src) as z:
            names = [
                i.filename
                for i in z.infolist()
                if not i.is_dir()
                and Path(i.filename).suffix.lower() in MIDI_SUFFIXES
                and not Path(i.filename).name.startswith(".")
                and "__MACOSX" not in i.filename
            ]
        for name in sorted(names):

            def read(name: str = name) -> bytes:
                with zipfile.ZipFile(src) as z:
                    return z.read(name)

            out.append((name, Path(name).stem, read))
    else:
        raise ParameterError(f"src={str(src)!r}: not a folder or a .zip of MIDI files")
    return out


def _is_done(path: Path, sr: int) -> bool:
    try:
        info = sf.info(str(path))
    except (OSError, RuntimeError, sf.LibsndfileError):
        return False
    return info.samplerate == sr and info.frames > 0


def _check_render_settings(program, sr, release, gain, subtype, workers) -> tuple:
    """``(program, sr, workers)`` as ints, or a ``ParameterError`` naming the bad one."""
    if program is not None:
        program = check_int("program", program, 0)
        if program > 127:
            raise ParameterError(
                f"program={program}: must be 0..127 (General MIDI, from 0) or None"
            )
    sr = check_int("sr", sr, 8000)
    if sr > 96000:
        raise ParameterError(f"sr={sr}: fluidsynth renders at 8000..96000 Hz")
    if not is_number(release) or release < 0:
        raise ParameterError(f"release={release!r}: must be a number of seconds >= 0")
    if not is_number(gain) or not 0 < gain <= 10:
        raise ParameterError(f"gain={gain!r}: must be in (0, 10]")
    if subtype not in sf.available_subtypes("WAV"):
        raise ParameterError(f"subtype={subtype!r}: not a WAV subtype soundfile knows")
    return program, sr, check_int("workers", workers, 1)


def render_midi(
    src: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    program: int | None = SITAR,
    soundfont: str | os.PathLike | None = None,
    sr: int = 44100,
    release: float = 0.5,
    labeler: Labeler = emopia_label,
    workers: int = 1,
    progress: bool = True,
    gain: float = 1.0,
    subtype: str = "PCM_16",
) -> RenderResult:
    """Render the labelled MIDI files in ``src`` (a folder or a .zip) to WAV under ``out_dir``.

    ``labeler(stem)`` gives ``(label, group)`` or None to leave a file out; outputs go to
    ``out_dir/<label>/<stem>.wav``, listed in ``out_dir/manifest.csv`` (``path,label,group``).
    ``program``: the GM instrument (0-based) for every non-drum channel, None to keep the file's.
    Each render is cut at the MIDI's length plus ``release`` seconds (faded over the release)
    and mixed to mono. FluidSynth's ``gain``; ``subtype``: the WAV sample format. Outputs that
    exist are kept (resume). A MIDI file that cannot be parsed or rendered is skipped with a
    warning naming it. ``workers`` renders run in parallel processes. Returns a
    :class:`RenderResult`.
    """
    _import_mido()
    program, sr, workers = _check_render_settings(program, sr, release, gain, subtype, workers)
    src, out = Path(src), Path(out_dir)
    sources = _sources(src)  # a missing source is named before a missing tool
    exe = find_fluidsynth()
    font = find_soundfont(soundfont)

    jobs, unlabelled = [], 0
    for name, stem, read in sources:
        tag = labeler(stem)
        if tag is None:
            unlabelled += 1
            continue
        label, group = tag
        jobs.append((name, stem, read, str(label), str(group)))
    stems = [j[1] for j in jobs]
    clashes = sorted({s for s in stems if stems.count(s) > 1})
    if clashes:
        raise ParameterError(f"several MIDI files share the name {', '.join(clashes[:5])}")

    rows, skipped, rescaled = [], [], []
    written = existing = 0
    todo = []
    for name, stem, read, label, group in jobs:
        rel = f"{label}/{stem}.wav"
        if _is_done(out / rel, sr):
            existing += 1
            rows.append((rel, label, group))
        else:
            todo.append((name, read, rel, label, group))

    def done(name: str, result, error: BaseException | None) -> None:
        nonlocal written
        _, _, rel, label, group = jobs_by_name[name]
        status, why = result if error is None else ("skipped", str(error))
        if status == "skipped":
            skipped.append((name, why))
            warnings.warn(f"skipped {name}: {why}", stacklevel=4)
        else:
            written += 1
            rows.append((rel, label, group))
            if status == "rescaled":
                rescaled.append(name)

    jobs_by_name = {job[0]: job for job in todo}
    settings = (program, exe, str(font), sr, release, gain, subtype)
    work = [(name, (name, read(), str(out / rel), *settings)) for name, read, rel, *_ in todo]
    for_each(
        _render_one, work, done, workers=workers, errors=(), desc="render MIDI", progress=progress
    )
    write_manifest(out, sorted(rows))
    return RenderResult(out, written, existing, unlabelled, skipped, rescaled)
