"""Catalogs on Ray (``musemo infer ... --ray``, ``musemo.scale``): a local Ray started by the
test, the same rows as on one machine, reruns that resume, and addresses that answer not."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray.data")
pytest.importorskip("pyarrow")

from test_catalog import parquet_rows, rows_of, write_catalog

from musemo import ParameterError
from musemo.cli import main
from musemo.edge.catalog import classify_catalog
from musemo.scale import classify_on_ray, connect
from musemo.scale.cluster import check_reachable


@pytest.fixture(scope="module")
def ray(tmp_path_factory):
    ray = connect(num_cpus=2)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> list[Path]:
    return write_catalog(tmp_path_factory.mktemp("catalog") / "music")


def by_path(rows: list[dict]) -> dict[str, dict]:
    return {r["path"]: r for r in rows}


def test_ray_writes_the_rows_one_machine_writes(tmp_path, catalog, ray):
    here, there = tmp_path / "here.jsonl", tmp_path / "there.jsonl"
    classify_catalog(catalog, here, progress=False)
    report = classify_on_ray(catalog, there, workers=2, progress=False)
    assert (report.classified, report.failed, report.skipped) == (6, 2, 0)
    assert by_path(rows_of(there)) == by_path(rows_of(here))


def test_a_rerun_on_ray_resumes_parquet_shards(tmp_path, catalog, ray):
    table = tmp_path / "out.parquet"
    first = classify_on_ray(catalog[:4], table, progress=False)
    assert first.classified == 4
    again = classify_on_ray(catalog, table, progress=False)
    assert (again.classified, again.failed, again.skipped) == (2, 2, 4)
    assert len(parquet_rows(table)) == 8


def test_musemo_infer_ray(tmp_path, catalog, ray, capsys):
    table = tmp_path / "out.parquet"
    assert main(["infer", str(catalog[0].parent), "--out", str(table), "--ray"]) == 1
    assert "8 files: 6 classified, 2 failed, 0 already in" in capsys.readouterr().out
    assert main(["infer", str(catalog[0]), "--ray"]) == 2  # no table
    assert "--workers and --ray classify into a table" in capsys.readouterr().err


def test_an_address_that_does_not_answer_is_refused_within_seconds(tmp_path, catalog):
    with pytest.raises(ParameterError, match="Ray address 'head': give HOST:PORT"):
        check_reachable("head")
    t0 = time.monotonic()
    command = [sys.executable, "-m", "musemo", "infer", str(catalog[0]), "--out",
               str(tmp_path / "t.jsonl"), "--ray", "127.0.0.1:9"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "cannot reach a Ray cluster at 127.0.0.1:9" in done.stderr
    assert time.monotonic() - t0 < 20  # the interpreter's start included
    assert not (tmp_path / "t.jsonl").exists()


def test_a_running_head_answers(ray):
    check_reachable(ray.get_runtime_context().gcs_address)


def test_a_silent_address_times_out():
    t0 = time.monotonic()
    with pytest.raises(ParameterError, match=r"cannot reach a Ray cluster at 10\.255\.255\.1:6379"):
        check_reachable("10.255.255.1:6379", timeout=0.5)  # routed nowhere, or unreachable
    assert time.monotonic() - t0 < 5


def test_the_feature_cache_filled_on_ray_is_the_one_made_here(tmp_path, ray):
    from fixtures_audio import tiny_spec, write_chord_dataset

    from musemo.data import load_dataset
    from musemo.scale import ray_jobs

    folder = write_chord_dataset(tmp_path / "chords", per_label=3)
    (folder / "happy" / "broken.wav").write_bytes(b"RIFF")
    here, _ = load_dataset(folder, tiny_spec(), cache=tmp_path / "here", progress=False)
    _, report = load_dataset(folder, tiny_spec(), cache=tmp_path / "there", progress=False,
                             run_jobs=ray_jobs())  # fmt: skip
    assert (report.computed, report.reused) == (6, 0)
    assert [p.name for p, _ in report.failed] == ["broken.wav"]
    there, again = load_dataset(folder, tiny_spec(), cache=tmp_path / "there", progress=False)
    assert (again.computed, again.reused) == (0, 6)  # training only reads
    assert [r.path for r in here.recordings] == [r.path for r in there.recordings]
    for a, b in zip(here.features, there.features, strict=True):
        assert np.array_equal(a, b)
