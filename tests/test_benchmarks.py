"""The benchmark scripts still run end to end (timings themselves are not tested), and
the timer they share."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fixtures_audio import write_register_dataset

from musemo.timing import wall_ms_each

ROOT = Path(__file__).resolve().parents[1]


def run_benchmark(script: str, *args: str) -> subprocess.CompletedProcess:
    """``benchmarks/SCRIPT ARGS`` in a fresh interpreter, its output captured."""
    command = [sys.executable, str(ROOT / "benchmarks" / script), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_features_benchmark_quick_run(tmp_path):
    out = tmp_path / "features.json"
    proc = run_benchmark("features.py", "--quick", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "musemo.melspectrogram" in proc.stdout
    data = json.loads(out.read_text())
    assert {"machine", "settings", "mel", "stft", "batch", "overhead"} <= set(data)


@pytest.mark.slow
def test_cache_scale_benchmark_small_run(tmp_path):
    out = tmp_path / "cache_scale.json"
    proc = run_benchmark(
        "cache_scale.py",
        *("--n", "20", "--root", str(tmp_path / "scale"), "--json", str(out)),
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["resumed_equals_uninterrupted"] and data["runs"]["interrupted"]["killed"]
    assert data["runs"]["cached"]["entries_after"] == 20
    assert data["runs"]["uninterrupted"]["peak_rss_mb"] > 0
    assert not (tmp_path / "scale").exists()


@pytest.mark.slow
def test_train_speed_gives_each_model_its_own_input_and_honours_freeze(tmp_path):
    out = tmp_path / "speed.json"
    quick = ("--device", "cpu", "--batch-size", "2", "--warmup", "1", "--steps", "1",
             "--windows", "1", "--json", str(out))  # fmt: skip
    proc = run_benchmark("train_speed.py", "--models", "squeezenet1_0", "musicnn", *quick)
    assert proc.returncode == 0, proc.stderr
    rows = {r["model"]: r for r in json.loads(out.read_text())["rows"]}
    assert rows["squeezenet1_0"]["shape"] == [128, 431] and rows["musicnn"]["shape"] == [96, 187]
    assert "| musicnn | 96x187 | fp32 | 2 |" in proc.stdout
    frozen = ("--freeze", "input_bn", "frontend")
    proc = run_benchmark("train_speed.py", "--models", "musicnn", *frozen, *quick)
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(out.read_text())["rows"]
    assert row["frozen"] == ["input_bn", "frontend"] and row["train_subclips_per_s"] > 0
    proc = run_benchmark("train_speed.py", "--models", "squeezenet1_0", *frozen, *quick)
    assert proc.returncode != 0 and "frozen module 'input_bn'" in proc.stderr


def test_infer_file_benchmark_times_a_whole_file_with_the_shipped_model(tmp_path):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "infer_file.json"
    proc = run_benchmark("infer_file.py", "--repeats", "2", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    row = json.loads(out.read_text())
    assert row["model"] == "happy-sad.int8.onnx" and row["windows"] == 10
    assert row["torch_imported"] is False and row["peak_rss_mb"] > 10
    parts = sum(row[k]["median"] for k in ("decode_resample_ms", "features_ms", "inference_ms"))
    assert 0 < parts <= 1.5 * row["end_to_end_ms"]["median"]
    assert "| end to end |" in proc.stdout and "goals (end to end <= 150 ms" in proc.stdout


def test_decode_benchmark_reads_each_format_with_its_decoder(tmp_path):
    pytest.importorskip("av")
    out = tmp_path / "decode.json"
    proc = run_benchmark("decode.py", "--seconds", "2", "--repeats", "1", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    rows = {r["file"]: r for r in json.loads(out.read_text())["rows"]}
    assert {n for n, r in rows.items() if r["decoder"] == "libsndfile"} == {
        "pcm16.wav", "pcm16.flac", "libsndfile.mp3", "vorbis.ogg"}  # fmt: skip
    assert {n for n, r in rows.items() if r["decoder"] == "FFmpeg"} == {
        "aac.m4a", "alac.m4a", "opus.webm", "mp3-in.mp4", "wma.wma"}  # fmt: skip
    assert rows["opus.webm"]["sample_rate"] == 48000 and all(r["median"] > 0 for r in rows.values())


@pytest.mark.slow
def test_catalog_benchmark_gives_the_same_answers_with_workers_and_on_ray(tmp_path):
    pytest.importorskip("ray.data")
    out = tmp_path / "catalog.json"
    proc = run_benchmark("catalog.py", "--n", "4", "--root", str(tmp_path / "c"), "--ray",
                         "--json", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    runs = [r["run"] for r in report["runs"]]
    assert report["same_answers"] and runs == ["1 worker", "2 workers", "Ray, 2 actors"]
    assert all("4 files: 4 classified" in r["summary"] for r in report["runs"])


def test_wall_ms_each_times_the_functions_in_turn():
    calls = []
    fns = {
        "fast": lambda: calls.append("fast"),
        "slow": lambda: (calls.append("slow"), time.sleep(0.003)),
    }
    out = wall_ms_each(fns, repeats=5, warmup=1)
    assert calls == ["fast", "slow"] * 6  # one warm-up round, then 5 timed rounds
    assert out["slow"]["median"] >= 3 > out["fast"]["median"]
    assert out["slow"]["p95"] >= out["slow"]["median"]


@pytest.mark.slow
def test_cross_dataset_benchmark_trains_on_one_set_and_scores_another(tmp_path, musicnn_wheel):
    source = write_register_dataset(tmp_path / "tones", per_label=4, seconds=5.5)
    target = write_register_dataset(tmp_path / "more_tones", per_label=3, seconds=5.5)
    out = tmp_path / "cross"
    proc = run_benchmark(
        "cross_dataset.py",
        *("--train", str(source), "--score", str(target), "--out", str(out)),
        *("--cache", str(tmp_path / "cache"), "--models", "squeezenet1_0", "--epochs", "1"),
        *("--finetune", "--finetune-epochs", "1", "--quiet"),
    )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads((out / "cross_tones.json").read_text())["rows"]
    assert set(rows) == {
        "baseline (log-mel stats + logistic regression)",
        "squeezenet1_0 from scratch",
        "musicnn zero-shot (p(happy) - p(sad))",
        "musicnn probe (penultimate)",
        "musicnn probe (pooled)",
        "musicnn fine-tuned",
    }
    assert all(set(scored) == {"more_tones"} for scored in rows.values())
    # high tones against low ones: a linear model on either set's features separates them
    assert rows["baseline (log-mel stats + logistic regression)"]["more_tones"]["roc_auc"] == 1.0
    assert rows["musicnn probe (penultimate)"]["more_tones"]["roc_auc"] == 1.0
    assert (out / "embeddings" / "more_tones.npz").is_file()
    assert (out / "musicnn" / "from_tones" / "last.pt").is_file()
    assert "| musicnn probe (pooled) |" in (out / "cross_tones.md").read_text()
    # a second run reuses the embeddings and the trained networks, and scores them alike
    again = subprocess.run(proc.args, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "embeddings of" not in again.stdout
    assert json.loads((out / "cross_tones.json").read_text())["rows"] == rows


@pytest.mark.slow
def test_real_music_benchmark_scores_every_row_on_the_same_folds(tmp_path, musicnn_wheel):
    data = write_register_dataset(tmp_path / "tones", per_label=6, seconds=5.5)
    # 4Q's other quadrants: tense (high arousal) and calm (low), one by the artist of happy0
    aux = write_register_dataset(
        tmp_path / "q2q4", per_label=3, seconds=5.5,
        registers={"tense": (1500.0, 3000.0), "calm": (150.0, 300.0)},
    )  # fmt: skip
    (aux / "tense" / "tense0.wav").rename(aux / "tense" / "happy0.wav")  # group: file name
    out = tmp_path / "runs"
    proc = run_benchmark(
        "real_music.py",
        *("--data", str(data), "--out", str(out), "--cache", str(tmp_path / "cache")),
        *("--folds", "2", "--models", "squeezenet1_0", "--epochs", "1"),
        *("--finetune", "--finetune-epochs", "1", "--auxiliary", str(aux), "--quiet"),
    )
    assert proc.returncode == 0, proc.stderr
    models = json.loads((out / "real_music.json").read_text())["models"]
    assert set(models) == {
        "baseline (log-mel stats + logistic regression)",
        "musicnn zero-shot (p(happy) - p(sad))",
        "musicnn probe (penultimate)",
        "musicnn probe (pooled)",
        "musicnn probe (pooled + MTT_musicnn)",
        "squeezenet1_0 from scratch",
        "musicnn fine-tuned",
        "musicnn fine-tuned + probe (pooled + MTT_musicnn)",
        "musicnn probe (pooled + MTT_musicnn), valence + arousal",
        "musicnn fine-tuned + valence + arousal probe",
    }
    assert all(len(m["folds"]) == 2 for m in models.values())
    # the auxiliary recording by happy0's artist is left out of the fold that scores happy0
    axes = models["musicnn probe (pooled + MTT_musicnn), valence + arousal"]["folds"]
    assert sorted(f["auxiliary"] for f in axes) == [5, 6]
    assert (out / "aux_embeddings.npz").is_file() and (out / "aux_mtt.npz").is_file()
    # high tones against low ones: a linear model on the log-mel statistics separates them
    assert models["baseline (log-mel stats + logistic regression)"]["roc_auc"]["mean"] == 1.0
    assert (out / "musicnn" / "fold1" / "last.pt").is_file()
    assert (out / "squeezenet1_0" / "fold1" / "last.pt").is_file()
    assert "| musicnn fine-tuned |" in (out / "real_music.md").read_text()
