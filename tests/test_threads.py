"""Concurrent calls give exactly the serial results; batch threads change nothing but speed."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from signals import tonal_signal

import musemo


def test_many_python_threads_share_one_extractor():
    extractor = musemo.MelExtractor(musemo.FeatureSpec(sample_rate=22050))
    signals = [tonal_signal(5000 + 997 * i, 22050, seed=i) for i in range(24)]
    serial = [extractor.compute(y) for y in signals]
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(3):
            parallel = list(pool.map(extractor.compute, signals))
            for a, b in zip(serial, parallel):
                np.testing.assert_array_equal(a, b)


def test_module_functions_from_many_threads(kernel_set):
    """Different settings at once: plans are cached and shared across threads."""
    jobs = [
        (tonal_signal(20000, 44100, seed=i), 256 << (i % 4), 128 + 64 * (i % 3)) for i in range(32)
    ]

    def run(job):
        y, n_fft, hop = job
        return musemo.melspectrogram(y=y, sr=44100, n_fft=n_fft, hop_length=hop, n_mels=40)

    serial = [run(j) for j in jobs]
    with ThreadPoolExecutor(max_workers=6) as pool:
        parallel = list(pool.map(run, jobs))
    for a, b in zip(serial, parallel):
        np.testing.assert_array_equal(a, b)


def test_compute_batch_threads_agree():
    extractor = musemo.MelExtractor()
    signals = [tonal_signal(44100 + 1000 * i, 44100, seed=i) for i in range(9)]
    one = extractor.compute_batch(signals, threads=1)
    two = extractor.compute_batch(signals, threads=2)
    many = extractor.compute_batch(signals, threads=16)
    for y, a, b, c in zip(signals, one, two, many):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(a, extractor.compute(y))


def test_batch_call_releases_the_gil():
    """While a long batch runs in one thread, another Python thread keeps running."""
    import threading
    import time

    extractor = musemo.MelExtractor(musemo.FeatureSpec(db=False))
    signals = [
        np.random.default_rng(i).standard_normal(44100 * 30).astype(np.float32) for i in range(12)
    ]
    ticks = []
    done = threading.Event()

    def ticker():
        while not done.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    t = threading.Thread(target=ticker)
    t.start()
    start = time.perf_counter()
    extractor.compute_batch(signals, threads=1)
    elapsed = time.perf_counter() - start
    done.set()
    t.join()
    during = [x for x in ticks if start <= x <= start + elapsed]
    # With the GIL held the ticker could not run at all during the batch.
    # (one tick per 50 ms leaves room for a busy machine)
    assert len(during) >= max(3, int(elapsed / 0.05))
