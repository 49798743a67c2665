"""Live input: PortAudio's callback side, and a real PortAudio stream (ALSA's null
device fed from /dev/zero: silence, faster than real time) through the classifier."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("ai_edge_litert")

from musemo import ParameterError
from musemo.edge import microphone
from musemo.edge.live import Blocks


def _sounddevice():
    try:
        import sounddevice
    except (ImportError, OSError) as exc:  # OSError: no PortAudio library
        pytest.skip(f"sounddevice with PortAudio is not installed ({exc})")
    return sounddevice


def test_blocks_log_overflows_and_drop_when_the_classifier_falls_behind(caplog):
    sd = _sounddevice()
    blocks = Blocks(max_blocks=2)
    fine, overflow = sd.CallbackFlags(), sd.CallbackFlags()
    overflow.input_overflow = True
    indata = np.arange(8, dtype=np.float32).reshape(4, 2)  # (frames, channels)
    with caplog.at_level(logging.WARNING, logger="musemo.edge.live"):
        blocks(indata, 4, None, fine)
        blocks(indata, 4, None, overflow)
        blocks(indata, 4, None, fine)  # the queue holds 2: this block is dropped
    assert blocks.overflows == 1 and blocks.dropped_samples == 4
    assert blocks.queue.qsize() == 2
    np.testing.assert_array_equal(blocks.queue.get(), [0, 2, 4, 6])  # first channel, copied
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "input overflow: the device dropped audio",
        "classifier fell behind: dropped 4 samples",
    ]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"block": 0}, "block=0"),
        ({"seconds": -1.0}, "seconds=-1.0"),
        ({"max_blocks": 0}, "max_blocks=0"),
        ({"max_blocks": True}, "max_blocks=True"),
    ],
)
def test_bad_live_settings_are_named(kwargs, message):
    with pytest.raises(ParameterError, match=message):
        microphone(**kwargs)


def test_a_real_portaudio_input_is_classified_and_a_slow_reader_drops_blocks(
    squeezenet_export, tmp_path
):
    _sounddevice()
    model = squeezenet_export[0] / "squeezenet1_0.int8.tflite"
    # PortAudio reads ALSA's configuration when it starts: a home whose .asoundrc makes
    # the default device ALSA's null plugin gives an input device on any machine. The
    # null plugin alone leaves the buffers unwritten (the runtime then skips every chunk
    # for its NaN garbage); the file plugin in front of it fills them from /dev/zero.
    (tmp_path / ".asoundrc").write_text(
        'pcm.!default {\n  type file\n  slave.pcm "null"\n  file "/dev/null"\n'
        '  infile "/dev/zero"\n  format "raw"\n}\n'
    )
    code = f"""
import json, logging, time
logging.basicConfig(level=logging.WARNING)
import sounddevice as sd
if not any(d["max_input_channels"] for d in sd.query_devices()):
    print(json.dumps(None))
    raise SystemExit
from musemo.edge import Classifier
from musemo.edge.live import classify_live, microphone
chunks, sr = microphone(seconds=4.0, block=0.1, max_blocks=3)
first = next(chunks)   # the stream is open
time.sleep(1.0)        # the classifier is busy: blocks beyond 3 are dropped
results = []
counts = classify_live(Classifier({str(model)!r}), chunks, sr=sr, on_result=results.append)
print(json.dumps({{"sr": sr, "first": len(first), "counts": counts,
                  "silent": [r.silent for r in results]}}))
"""
    env = {**os.environ, "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    if got is None:
        pytest.skip("PortAudio lists no input device, even ALSA's null plugin")
    assert got["first"] == int(0.1 * got["sr"])
    assert "classifier fell behind: dropped" in done.stderr
    assert got["counts"]["skipped"] == 0 and got["counts"]["windows"] >= 1
    assert all(got["silent"])  # the null device records silence
