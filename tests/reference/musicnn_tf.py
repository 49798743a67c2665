"""Run the original MSD_musicnn with TensorFlow and write the reference file that
``tests/test_musicnn.py`` compares musemo's PyTorch port against.

One-off, outside musemo's dependencies (CI never runs it)::

    python -m venv /tmp/tf && /tmp/tf/bin/pip install tensorflow-cpu librosa
    pip download --no-deps musicnn==0.1.0 -d /tmp/wheel
    /tmp/tf/bin/python tests/reference/musicnn_tf.py /tmp/wheel/musicnn-0.1.0-py3-none-any.whl \
        tests/data/musicnn_reference.npz

The graph is the one saved with the checkpoint (``MSD_musicnn/.meta``), not musicnn's
Python code; its training-only nodes are dropped and the variables are fed from the
checkpoint. The inputs are log-mel patches of synthetic music made here, computed as
musicnn's front end does but in float32 (its float16 cast overflows under NumPy 2).
"""

import sys
import tempfile
import zipfile
from pathlib import Path

import librosa
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2

SR, N_FFT, HOP, N_MELS, FRAMES = 16000, 512, 256, 96, 187
OUTPUTS = {
    "tags": "model/Sigmoid:0",
    "penultimate": "model/batch_normalization_10/batchnorm/add_1:0",
    "mean_pool": "model/moments/Squeeze:0",
    "max_pool": "model/Max:0",
}


def synthetic_music(seed: int, seconds: float = 4.0) -> np.ndarray:
    """Chords with a pulse and some noise: spectra that look like music to the network."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    y = np.zeros_like(t)
    for f in 110 * 2 ** (rng.integers(0, 24, size=4) / 12):
        y += 0.15 * np.sin(2 * np.pi * f * t) * (1 + np.sin(2 * np.pi * rng.uniform(1, 4) * t)) / 2
    y += 0.05 * rng.standard_normal(t.size) * (np.sin(2 * np.pi * 2 * t) > 0.7)
    return y.astype(np.float32)


def log_mel(y: np.ndarray) -> np.ndarray:
    mel = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS)
    return np.log10(10000 * mel.astype(np.float32) + 1).T[:FRAMES]  # (frames, mels)


def load_graph(folder: Path):
    meta = meta_graph_pb2.MetaGraphDef()
    meta.ParseFromString((folder / ".meta").read_bytes())
    nodes = [
        n
        for n in meta.graph_def.node
        if not n.name.startswith(("gradients", "save")) and "Adam" not in n.name
    ]
    while True:  # and every node that needs a dropped one
        names = {n.name for n in nodes}
        kept = [n for n in nodes if all(i.lstrip("^").split(":")[0] in names for i in n.input)]
        if len(kept) == len(nodes):
            break
        nodes = kept
    del meta.graph_def.node[:]
    meta.graph_def.node.extend(nodes)
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(meta.graph_def, name="")
    return graph


def main(wheel: str, out: str) -> None:
    tf.compat.v1.disable_eager_execution()
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(wheel) as z:
            z.extractall(tmp)
        folder = Path(tmp) / "musicnn" / "MSD_musicnn"
        graph = load_graph(folder)
        reader = tf.compat.v1.train.NewCheckpointReader(str(folder) + "/")
        feed = {
            graph.get_tensor_by_name(f"{name}/read:0"): reader.get_tensor(name)
            for name in reader.get_variable_to_shape_map()
            if "Adam" not in name and not name.startswith("beta")
        }
        x = np.stack([log_mel(synthetic_music(seed)) for seed in range(4)])
        feed[graph.get_tensor_by_name("model/Placeholder:0")] = x
        feed[graph.get_tensor_by_name("model/Placeholder_2:0")] = False
        with tf.compat.v1.Session(graph=graph) as sess:
            values = sess.run({k: graph.get_tensor_by_name(v) for k, v in OUTPUTS.items()}, feed)
    values["max_pool"] = values["max_pool"][..., 0]
    values["mean_pool"] = values["mean_pool"][..., 0]
    np.savez_compressed(out, x=x, tf_version=tf.__version__, **values)
    print(out, {k: v.shape for k, v in values.items()})


if __name__ == "__main__":
    main(*sys.argv[1:3])
