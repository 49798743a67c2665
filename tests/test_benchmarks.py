"""The benchmark scripts still run end to end (timings themselves are not tested), and
the timer they share."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from musemo.timing import wall_ms_each

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_features_benchmark_quick_run(tmp_path):
    out = tmp_path / "features.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "features.py"), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "musemo.melspectrogram" in proc.stdout
    data = json.loads(out.read_text())
    assert {"machine", "settings", "mel", "stft", "batch", "overhead"} <= set(data)


@pytest.mark.slow
def test_cache_scale_benchmark_small_run(tmp_path):
    out = tmp_path / "cache_scale.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "cache_scale.py"),
            *("--n", "20", "--root", str(tmp_path / "scale"), "--json", str(out)),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["resumed_equals_uninterrupted"] and data["runs"]["interrupted"]["killed"]
    assert data["runs"]["cached"]["entries_after"] == 20
    assert data["runs"]["uninterrupted"]["peak_rss_mb"] > 0
    assert not (tmp_path / "scale").exists()


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
