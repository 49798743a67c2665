"""The benchmark scripts still run end to end (timings themselves are not tested)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


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
