"""Classifying a catalog (``musemo infer ... --out TABLE``): a row per file in JSON Lines,
CSV or Parquet shards, error rows for broken files, reruns that skip what the table holds
(by content and model), one or two workers alike, no torn line after a kill."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musemo import ParameterError
from musemo._digest import file_sha256
from musemo.cli import main
from musemo.edge.catalog import classify_catalog
from musemo.edge.tables import ParquetTable, columns

SR = 16000


def write_catalog(root: Path, n: int = 6) -> list[Path]:
    """``n`` tones of 3.5 s (high ones and low ones) and two broken files."""
    root.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(SR * 3.5)) / SR
    paths = []
    for k in range(n):
        path = root / f"tone{k}.wav"
        sf.write(path, 0.3 * np.sin(2 * np.pi * (200 + 400 * k) * t), SR)
        paths.append(path)
    (root / "empty.wav").write_bytes(b"")
    (root / "text.mp3").write_bytes(b"not audio\n" * 50)
    return [*paths, root / "empty.wav", root / "text.mp3"]


def rows_of(table: Path) -> list[dict]:
    if table.suffix == ".csv":
        with open(table, newline="") as f:
            return list(csv.DictReader(f))
    return [json.loads(line) for line in table.read_text().splitlines()]


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> list[Path]:
    return write_catalog(tmp_path_factory.mktemp("catalog") / "music")


def test_a_row_per_file_and_error_rows_for_broken_ones(tmp_path, catalog):
    table = tmp_path / "out.jsonl"
    report = classify_catalog(catalog, table, progress=False)
    assert (report.classified, report.failed, report.skipped) == (6, 2, 0)
    rows = {Path(r["path"]).name: r for r in rows_of(table)}
    assert set(rows) == {p.name for p in catalog}
    for name in ("empty.wav", "text.mp3"):
        assert name in rows[name]["error"] and rows[name]["label"] is None
    good = rows["tone0.wav"]
    assert good["error"] == "" and good["label"] in ("happy", "sad")
    assert good["sha256"] == file_sha256(catalog[0]) and good["windows"] >= 1
    assert abs(good["p_happy"] + good["p_sad"] - 1) < 1e-5


def test_a_rerun_skips_by_content_and_retries_errors(tmp_path, catalog):
    table = tmp_path / "out.jsonl"
    classify_catalog(catalog, table, progress=False)
    moved = tmp_path / "moved.wav"  # the same content under another name: already done
    moved.write_bytes(catalog[0].read_bytes())
    again = classify_catalog([*catalog, moved], table, progress=False)
    assert (again.classified, again.failed, again.skipped) == (0, 2, 7)
    assert len(rows_of(table)) == 8 + 2  # the two broken files tried again


def test_another_model_classifies_again(tmp_path, catalog, squeezenet_export):
    folder, _ = squeezenet_export
    model = next(Path(folder).glob("*int8.onnx"))
    table = tmp_path / "out.jsonl"
    classify_catalog(catalog[:2], table, progress=False)
    other = classify_catalog(catalog[:2], table, model=model, progress=False)
    assert other.classified == 2 and other.skipped == 0
    assert {r["model"] for r in rows_of(table)} == {"happy-sad.int8.onnx", model.name}


def test_two_workers_write_the_same_rows(tmp_path, catalog):
    one, two = tmp_path / "one.csv", tmp_path / "two.csv"
    classify_catalog(catalog, one, progress=False)
    report = classify_catalog(catalog, two, workers=2, progress=False)
    assert report.classified == 6 and report.failed == 2
    by_path = lambda rows: {r["path"]: r for r in rows}  # noqa: E731
    assert by_path(rows_of(one)) == by_path(rows_of(two))  # CSV: the same text, any order


def test_a_torn_last_line_is_cut_before_appending(tmp_path, catalog):
    table = tmp_path / "out.jsonl"
    classify_catalog(catalog[:3], table, progress=False)
    with open(table, "ab") as f:
        f.write(b'{"path": "half a li')  # what a killed writer could leave
    report = classify_catalog(catalog[:4], table, progress=False)
    assert report.skipped == 3 and report.classified == 1
    assert [Path(r["path"]).name for r in rows_of(table)] == [f"tone{k}.wav" for k in range(4)]


def test_refusals(tmp_path, catalog):
    with pytest.raises(ParameterError, match=r"out\.xlsx: write results to a \.jsonl, \.csv"):
        classify_catalog(catalog, tmp_path / "out.xlsx", progress=False)
    with pytest.raises(ParameterError, match="workers=0"):
        classify_catalog(catalog, tmp_path / "out.csv", workers=0, progress=False)
    other = tmp_path / "other.csv"
    other.write_text("path,score\nx.wav,1\n")
    with pytest.raises(ParameterError, match=r"other\.csv holds the columns"):
        classify_catalog(catalog, other, progress=False)
    assert other.read_text() == "path,score\nx.wav,1\n"
    assert main(["infer", str(catalog[0]), "--workers", "2"]) == 2


def test_musemo_infer_takes_folders_and_manifests(tmp_path, catalog, capsys):
    manifest = tmp_path / "list.csv"
    manifest.write_text("path,label\n" + "".join(f"{p},x\n" for p in catalog[:2]))
    table = tmp_path / "out.csv"
    code = main(["infer", str(catalog[0].parent), str(manifest), "--out", str(table)])
    assert code == 1  # two broken files
    said = capsys.readouterr().out
    assert said.startswith("8 files: 6 classified, 2 failed, 0 already in")  # each file once
    assert len(rows_of(table)) == 8


@pytest.mark.slow
def test_a_killed_run_loses_only_files_in_flight(tmp_path):
    music = tmp_path / "music"
    files = write_catalog(music, n=40)[:40]
    table = tmp_path / "out.jsonl"
    command = [sys.executable, "-m", "musemo", "infer", str(music), "--out", str(table)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (
        not table.exists() or table.read_bytes().count(b"\n") < 10
    ):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = {r["path"] for r in rows_of(table)}  # every line whole
    assert 10 <= len(done_before) < 42
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 1, rerun.stderr  # the two broken files
    rows = rows_of(table)
    classified = [r["path"] for r in rows if not r["error"]]
    assert sorted(classified) == sorted(map(str, files))  # each file exactly once


def parquet_rows(folder: Path) -> list[dict]:
    pq = pytest.importorskip("pyarrow.parquet")
    return pq.read_table(folder).to_pylist()  # the folder as one table, as pandas reads it


def test_parquet_holds_the_rows_jsonl_holds(tmp_path, catalog):
    lines, shards = tmp_path / "out.jsonl", tmp_path / "out.parquet"
    classify_catalog(catalog, lines, progress=False)
    report = classify_catalog(catalog, shards, progress=False)
    assert (report.classified, report.failed) == (6, 2)
    by_path = lambda rows: {r["path"]: r for r in rows}  # noqa: E731
    assert by_path(parquet_rows(shards)) == by_path(rows_of(lines))
    assert len(list(shards.glob("part-*.parquet"))) == 1  # the journal rolled at the end
    again = classify_catalog(catalog, shards, progress=False)
    assert (again.skipped, again.failed) == (6, 2)
    assert len(parquet_rows(shards)) == 8 + 2


def fake_rows(n: int) -> list[dict]:
    names = columns(("happy", "sad"))
    return [{**dict.fromkeys(names), "path": f"{k}.wav", "sha256": f"{k:064x}", "model": "m",
             "model_sha256": "m" * 64, "label": "happy", "uncertain": False, "duration": 3.5,
             "windows": 1, "warning": "", "error": ""} for k in range(n)]  # fmt: skip


def test_parquet_rolls_its_journal_into_whole_shards(tmp_path):
    pytest.importorskip("pyarrow")
    folder, labels, rows = tmp_path / "t.parquet", ("happy", "sad"), fake_rows(8)
    table = ParquetTable(folder, labels, rows_per_shard=3)
    with table.appending() as append:
        for row in rows[:7]:
            append(row)
        assert len(table.shards()) == 2 and len(rows_of(table.journal.path)) == 1
    assert len(table.shards()) == 3 and table.journal.path.read_bytes() == b""
    assert table.rows() == rows[:7]
    # killed between a shard's rename and the journal's truncation: rolled once only
    table.journal.path.write_text("".join(json.dumps(r) + "\n" for r in rows[6:7]))
    # and killed mid-line
    with open(table.journal.path, "a") as f:
        f.write(json.dumps(rows[7])[:20])
    again = ParquetTable(folder, labels)
    assert again.rows() == rows[:7] and len(again.shards()) == 3
    assert again.done("m" * 64) == {r["sha256"] for r in rows[:7]}


def test_parquet_refusals(tmp_path, catalog, monkeypatch):
    pytest.importorskip("pyarrow")
    (tmp_path / "file.parquet").write_bytes(b"PAR1")
    with pytest.raises(ParameterError, match=r"file\.parquet is a file: a \.parquet table"):
        classify_catalog(catalog[:1], tmp_path / "file.parquet", progress=False)
    foreign = tmp_path / "foreign.parquet"
    foreign.mkdir()
    (foreign / "part-0.parquet").write_bytes(b"not parquet")
    with pytest.raises(ParameterError, match=r"part-0\.parquet: not a readable Parquet shard"):
        classify_catalog(catalog[:1], foreign, progress=False)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(ParameterError, match=r"pip install 'musemo\[ray\]'"):
        classify_catalog(catalog[:1], tmp_path / "new.parquet", progress=False)


@pytest.mark.slow
def test_ten_thousand_files_with_a_few_broken_ones(tmp_path, squeezenet_export):
    folder, _ = squeezenet_export
    model = next(Path(folder).glob("*int8.onnx"))
    music = tmp_path / "music"
    rng = np.random.default_rng(0)
    for k in range(10_000):
        shelf = music / f"{k // 500:02d}"
        shelf.mkdir(parents=True, exist_ok=True)
        tone = np.sin(2 * np.pi * rng.uniform(100, 1000) * np.arange(1600) / 8000)
        sf.write(shelf / f"{k:05d}.wav", 0.3 * tone, 8000)  # 0.2 s: padded to a window
    broken = {"00/00003.wav": b"", "01/00700.wav": b"RIFF\x10\x00\x00\x00WAVE",
              "07/03501.wav": b"not audio\n" * 20}  # fmt: skip
    for name, content in broken.items():
        (music / name).write_bytes(content)
    table = tmp_path / "tags.parquet"
    code = main(["infer", str(model), str(music), "--out", str(table), "--workers", "2"])
    assert code == 1  # some failed
    rows = parquet_rows(table)
    assert len(rows) == 10_000 == len({r["path"] for r in rows})
    failed = {str(Path(r["path"]).relative_to(music)): r["error"] for r in rows if r["error"]}
    assert set(failed) == set(broken)
    assert all(name.split("/")[1] in why for name, why in failed.items())  # named
    assert all(r["label"] in ("happy", "sad") for r in rows if not r["error"])
