"""Rendering labelled MIDI files to audio (musemo.data.synthetic.midi)."""

from __future__ import annotations

import csv
import shutil
import zipfile

import numpy as np
import pytest
import soundfile as sf

mido = pytest.importorskip("mido")

from musemo.data.synthetic import (
    midi,
    render_midi,
)
from musemo.data.synthetic.midi import RenderToolError, emopia_label, find_soundfont, set_program
from musemo.errors import ParameterError


def _soundfont_or_none():
    try:
        return find_soundfont()
    except RenderToolError:
        return None


needs_fluidsynth = pytest.mark.skipif(
    shutil.which("fluidsynth") is None or _soundfont_or_none() is None,
    reason="needs the fluidsynth program and a General MIDI soundfont "
    "(Debian packages fluidsynth and fluid-soundfont-gm)",
)

SR = 16000


def three_channel_midi(pitch: int = 60) -> mido.MidiFile:
    """1.5 s at 120 bpm: piano on channel 0, a voice on channel 1 with no program change of
    its own, a bank select, and a drum on channel 9 (program 0 there)."""
    mid = mido.MidiFile(type=1, ticks_per_beat=480)
    conductor = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500000, time=0)])
    melody = mido.MidiTrack(
        [
            mido.Message("control_change", channel=0, control=0, value=8, time=0),
            mido.Message("program_change", channel=0, program=0, time=0),
            mido.Message("note_on", channel=0, note=pitch, velocity=90, time=0),
            mido.Message("note_off", channel=0, note=pitch, velocity=0, time=480),
            mido.Message("note_on", channel=1, note=pitch + 7, velocity=80, time=0),
            mido.Message("program_change", channel=0, program=40, time=0),
            mido.Message("note_on", channel=0, note=pitch + 4, velocity=90, time=0),
            mido.Message("note_off", channel=0, note=pitch + 4, velocity=0, time=960),
            mido.Message("note_off", channel=1, note=pitch + 7, velocity=0, time=0),
        ]
    )
    drums = mido.MidiTrack(
        [
            mido.Message("program_change", channel=9, program=0, time=0),
            mido.Message("note_on", channel=9, note=38, velocity=100, time=0),
            mido.Message("note_off", channel=9, note=38, velocity=0, time=240),
        ]
    )
    mid.tracks.extend([conductor, melody, drums])
    return mid


@pytest.fixture
def emopia_style_zip(tmp_path):
    """A zip like EMOPIA's: two Q1 clips of song A, one Q3 clip of song_B (an id with an
    underscore), Q2 and Q4 clips, a corrupt Q3 .mid and a stray text file."""
    path = tmp_path / "midis.zip"
    with zipfile.ZipFile(path, "w") as z:
        for i, name in enumerate(
            ["Q1_songA_0", "Q1_songA_1", "Q3_song_B_0", "Q2_songC_0", "Q4_songD_0"]
        ):
            mid = three_channel_midi(pitch=55 + i)
            mid.save(str(tmp_path / "tmp.mid"))
            z.write(tmp_path / "tmp.mid", f"midis/{name}.mid")
        z.writestr("midis/Q3_broken_0.mid", b"MThd\x00\x00\x00\x06\x00\x01garbage")
        z.writestr("midis/README.txt", "not a MIDI file")
    return path


@pytest.fixture
def one_midi_folder(tmp_path):
    """A folder holding one Q1 MIDI file (three_channel_midi)."""
    folder = tmp_path / "midis"
    folder.mkdir()
    three_channel_midi().save(str(folder / "Q1_songA_0.mid"))
    return folder


def _programs(mid) -> dict[int, set[int]]:
    progs: dict[int, set[int]] = {}
    for track in mid.tracks:
        for msg in track:
            if msg.type == "program_change":
                progs.setdefault(msg.channel, set()).add(msg.program)
    return progs


def test_emopia_names_give_mood_and_song():
    assert emopia_label("Q1_0vLPYiPN7qY_0") == ("happy", "0vLPYiPN7qY")
    assert emopia_label("Q3_ab_c-d_12") == ("sad", "ab_c-d")
    assert emopia_label("Q2_0vLPYiPN7qY_0") is None
    assert emopia_label("Q4_0vLPYiPN7qY_0") is None
    assert emopia_label("song") is None


def test_every_melodic_channel_is_set_to_the_program_and_drums_are_left(tmp_path):
    path = tmp_path / "sitar.mid"
    set_program(three_channel_midi(), 104).save(str(path))
    back = mido.MidiFile(str(path))
    assert _programs(back) == {0: {104}, 1: {104}, 9: {0}}
    melody = back.tracks[1]
    # A program change at time 0 opens the track for each channel it uses.
    assert [(m.type, m.channel, m.time) for m in melody[:2]] == [
        ("program_change", 0, 0),
        ("program_change", 1, 0),
    ]
    assert all(m.value == 0 for m in melody if m.type == "control_change" and m.control == 0)
    assert back.length == pytest.approx(three_channel_midi().length)
    notes = [m for m in melody if m.type.startswith("note")]
    assert notes == [m for m in three_channel_midi().tracks[1] if m.type.startswith("note")]


def test_bad_program_is_refused():
    with pytest.raises(ParameterError, match="program=128"):
        set_program(three_channel_midi(), 128)


def test_missing_fluidsynth_says_which_package(monkeypatch, one_midi_folder, tmp_path):
    monkeypatch.setattr(midi.shutil, "which", lambda name: None)
    with pytest.raises(RenderToolError, match="'fluidsynth'"):
        render_midi(one_midi_folder, tmp_path / "out", progress=False)


def test_missing_soundfont_says_which_package(monkeypatch, tmp_path):
    monkeypatch.setattr(midi, "SOUNDFONT_PLACES", (str(tmp_path / "none.sf2"),))
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *args: None)
    with pytest.raises(RenderToolError, match="fluid-soundfont-gm"):
        find_soundfont()
    with pytest.raises(RenderToolError, match="does not exist"):
        find_soundfont(tmp_path / "missing.sf2")


@needs_fluidsynth
def test_zip_render_labels_skips_and_resumes(emopia_style_zip, tmp_path):
    out = tmp_path / "out"
    with pytest.warns(UserWarning, match="Q3_broken_0.mid"):
        result = render_midi(emopia_style_zip, out, sr=SR, workers=2, progress=False)
    assert (result.root, result.written, result.existing, result.unlabelled) == (out, 3, 0, 2)
    assert [name for name, _ in result.skipped] == ["midis/Q3_broken_0.mid"]
    assert "cannot parse" in result.skipped[0][1]
    with open(out / "manifest.csv", newline="") as f:
        rows = [(r["path"], r["label"], r["group"]) for r in csv.DictReader(f)]
    assert rows == [
        ("happy/Q1_songA_0.wav", "happy", "songA"),
        ("happy/Q1_songA_1.wav", "happy", "songA"),
        ("sad/Q3_song_B_0.wav", "sad", "song_B"),
    ]
    assert sorted(p.name for p in out.rglob("*.wav")) == [
        "Q1_songA_0.wav",
        "Q1_songA_1.wav",
        "Q3_song_B_0.wav",
    ]
    assert not [p for p in out.rglob(".*")]  # no temporary files left

    with pytest.warns(UserWarning, match="Q3_broken_0.mid"):
        again = render_midi(emopia_style_zip, out, sr=SR, progress=False)
    assert (again.written, again.existing, again.unlabelled, len(again.skipped)) == (0, 3, 2, 1)
    assert (out / "manifest.csv").read_text().count("\n") == 4


@needs_fluidsynth
def test_render_is_cut_at_midi_length_plus_release(one_midi_folder, tmp_path):
    length = three_channel_midi().length  # 1.5 s
    sitar = render_midi(one_midi_folder, tmp_path / "sitar", sr=SR, release=0.25, progress=False)
    piano = render_midi(
        one_midi_folder, tmp_path / "piano", sr=SR, release=0.25, program=None, progress=False
    )
    assert sitar.written == piano.written == 1
    y, sr = sf.read(str(tmp_path / "sitar" / "happy" / "Q1_songA_0.wav"), always_2d=True)
    assert sr == SR and y.shape[1] == 1
    assert len(y) == round((length + 0.25) * SR)
    assert np.abs(y).max() > 0.01  # it sounds
    assert np.abs(y[-5:]).max() < 1e-3  # and is faded out at the cut
    p, _ = sf.read(str(tmp_path / "piano" / "happy" / "Q1_songA_0.wav"))
    assert len(p) == len(y) and not np.allclose(p, y[:, 0], atol=1e-3)  # another instrument


def test_bad_source_is_refused(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    if shutil.which("fluidsynth") is None or _soundfont_or_none() is None:
        pytest.skip("needs fluidsynth and a soundfont to get as far as reading the source")
    with pytest.raises(ParameterError, match="not a folder or a .zip"):
        render_midi(tmp_path / "a.txt", tmp_path / "out", progress=False)
