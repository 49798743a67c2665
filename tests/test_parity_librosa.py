"""musemo against librosa computed in float64, on a grid of settings."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
from signals import assert_matches_reference, tonal_signal

import musemo

librosa = pytest.importorskip("librosa")

SAMPLE_RATES = [22050, 44100, 48000]
N_FFTS = [256, 512, 1024, 2048, 4096]
MEL_SCALES = [(False, "slaney"), (True, None), (False, None), (True, "slaney")]
PAD_MODES = ["constant", "reflect", "edge"]
HOPS = [64, 160, 512, 1000]

# A covering subset of the full product: every sample rate meets every n_fft,
# and the mel scales, pad modes, hops and odd lengths cycle through them.
GRID = [
    (sr, n_fft, *MEL_SCALES[i % 4], PAD_MODES[i % 3], HOPS[i % 4], 4001 + 2 * i + (i % 2))
    for i, (sr, n_fft) in enumerate(itertools.product(SAMPLE_RATES, N_FFTS))
]


def librosa_mel(y, sr, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # librosa warns when n_fft exceeds the signal
        return librosa.feature.melspectrogram(y=y.astype(np.float64), sr=sr, dtype=np.float64, **kw)


@pytest.mark.filterwarnings("ignore:Empty filters")  # librosa warns alike for n_fft=256, 64 mels
@pytest.mark.parametrize(("sr", "n_fft", "htk", "norm", "pad_mode", "hop", "n"), GRID)
def test_melspectrogram_grid(kernel_set, sr, n_fft, htk, norm, pad_mode, hop, n):
    y = tonal_signal(n, sr, seed=n)
    kw = dict(n_fft=n_fft, hop_length=hop, pad_mode=pad_mode, htk=htk, norm=norm, n_mels=64)
    assert_matches_reference(musemo.melspectrogram(y=y, sr=sr, **kw), librosa_mel(y, sr, **kw))


@pytest.mark.parametrize("pad_mode", PAD_MODES)
@pytest.mark.parametrize("n_fft", N_FFTS)
def test_stft_power_matches_librosa(kernel_set, n_fft, pad_mode, noise_3001_samples):
    y = noise_3001_samples
    ours = musemo.stft_power(y, n_fft=n_fft, pad_mode=pad_mode)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = np.abs(librosa.stft(y.astype(np.float64), n_fft=n_fft, pad_mode=pad_mode)) ** 2
    assert_matches_reference(ours, ref)


@pytest.mark.parametrize("power", [1.0, 2.0, 1.5])
def test_power_exponents(kernel_set, power, one_second_tonal_44k):
    y = one_second_tonal_44k
    ours = musemo.melspectrogram(y=y, sr=44100, power=power)
    assert_matches_reference(ours, librosa_mel(y, 44100, power=power))


@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize("win_length", [None, 1000, 2047])
def test_centring_and_short_windows(kernel_set, center, win_length, one_second_tonal_44k):
    y = one_second_tonal_44k[:20000]
    kw = dict(n_fft=2048, hop_length=333, win_length=win_length, center=center)
    assert_matches_reference(
        musemo.melspectrogram(y=y, sr=44100, **kw), librosa_mel(y, 44100, **kw)
    )


@pytest.mark.parametrize(
    "window", ["hann", "hamming", "blackman", "blackmanharris", "boxcar", "triang", ("kaiser", 8.0)]
)
def test_windows(window, one_second_tonal_44k):
    y = one_second_tonal_44k
    ours = musemo.melspectrogram(y=y, sr=44100, window=window)
    assert_matches_reference(ours, librosa_mel(y, 44100, window=window))


def test_window_given_as_an_array(one_second_tonal_44k):
    y = one_second_tonal_44k
    w = np.hanning(1500)
    ours = musemo.melspectrogram(y=y, sr=44100, window=w, win_length=1500)
    assert_matches_reference(ours, librosa_mel(y, 44100, window=w, win_length=1500))


def test_fmin_fmax_and_mel_count(one_second_tonal_44k):
    y = one_second_tonal_44k
    kw = dict(n_mels=40, fmin=50.0, fmax=8000.0)
    assert_matches_reference(
        musemo.melspectrogram(y=y, sr=44100, **kw), librosa_mel(y, 44100, **kw)
    )


@pytest.mark.parametrize("shape", [(2,), (3, 2)])
def test_multichannel(kernel_set, shape):
    n = 12345
    y = np.stack([tonal_signal(n, 22050, seed=i) for i in range(int(np.prod(shape)))]).reshape(
        *shape, n
    )
    ours = musemo.melspectrogram(y=y, sr=22050)
    ref = librosa_mel(y, 22050)
    assert ours.shape == shape + (128, 1 + n // 512)
    assert_matches_reference(ours, ref)
    np.testing.assert_array_equal(musemo.melspectrogram(y=y, sr=22050, threads=2), ours)


def test_signal_shorter_than_the_window(kernel_set):
    """librosa pads (with a warning); frames = 1 + n // hop still holds."""
    y = tonal_signal(700, 22050)
    for pad_mode in PAD_MODES:
        assert_matches_reference(
            musemo.melspectrogram(y=y, sr=22050, pad_mode=pad_mode),
            librosa_mel(y, 22050, pad_mode=pad_mode),
        )


def test_from_a_power_spectrogram(one_second_tonal_44k):
    y = one_second_tonal_44k
    S = musemo.stft_power(y)
    ref = librosa.feature.melspectrogram(S=S.astype(np.float64), sr=44100, dtype=np.float64)
    np.testing.assert_allclose(
        musemo.melspectrogram(S=S, sr=44100), ref, rtol=1e-5, atol=1e-6 * ref.max()
    )


def test_float64_input_gives_float32_output(one_second_tonal_44k):
    y64 = one_second_tonal_44k.astype(np.float64)
    ours = musemo.melspectrogram(y=y64, sr=44100)
    assert ours.dtype == np.float32
    assert_matches_reference(ours, librosa_mel(y64, 44100))


@pytest.mark.parametrize("top_db", [80.0, None, 40.0])
@pytest.mark.parametrize("ref", [1.0, np.max, 0.01])
def test_power_to_db(ref, top_db, one_second_tonal_44k):
    S = musemo.melspectrogram(y=one_second_tonal_44k, sr=44100)
    ours = musemo.power_to_db(S, ref=ref, top_db=top_db)
    expected = librosa.power_to_db(S.astype(np.float64), ref=ref, top_db=top_db)
    np.testing.assert_allclose(ours, expected, atol=1e-4)


@pytest.mark.parametrize(
    ("sr", "n_fft", "n_mels", "htk", "norm", "fmin", "fmax"),
    [
        (22050, 2048, 128, False, "slaney", 0.0, None),
        (44100, 2048, 128, True, None, 20.0, 16000.0),
        (48000, 4096, 96, False, 1.0, 0.0, None),
        (16000, 512, 40, True, np.inf, 0.0, 8000.0),
        (44100, 1024, 64, False, 2.0, 300.0, 3000.0),
    ],
)
def test_mel_filters_match_librosa(sr, n_fft, n_mels, htk, norm, fmin, fmax):
    settings = dict(sr=sr, n_fft=n_fft, n_mels=n_mels, htk=htk, norm=norm, fmin=fmin, fmax=fmax)
    ours = musemo.mel_filters(**settings, dtype=np.float64)
    ref = librosa.filters.mel(**settings, dtype=np.float64)
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-15)


def test_mel_frequencies_match_librosa():
    for htk in (False, True):
        np.testing.assert_allclose(
            musemo.mel_frequencies(50, fmin=10.0, fmax=20000.0, htk=htk),
            librosa.mel_frequencies(50, fmin=10.0, fmax=20000.0, htk=htk),
            rtol=1e-12,
        )


def test_musicnn_front_end_matches_librosa_and_numpy(kernel_set):
    """musicnn's features: librosa's mel at 16 kHz (512 / 256, 96 Slaney mels), then
    log10(1 + 10000 x), all in float64 on the reference side."""
    spec = musemo.FeatureSpec(
        sample_rate=16000, n_fft=512, hop_length=256, n_mels=96, db=False, log1p_scale=10000.0
    )
    y = tonal_signal(3 * 16000, 16000, seed=3)
    ours = musemo.MelExtractor(spec).compute(y)
    mel = librosa_mel(y, 16000, n_fft=512, hop_length=256, n_mels=96)
    assert ours.shape == mel.shape == (96, 188)
    # the mel bound of every other setting (relative 1e-3 within 80 dB of the peak, 1e-6
    # of the peak everywhere) carried through log10(1 + c x), plus float32 rounding
    ref = np.log10(1 + 10000 * mel)
    peak = mel.max()
    allowed = np.where(mel >= peak * 1e-8, 1e-3 * mel, 0) + 1e-6 * peak
    bound = 10000 * allowed / ((1 + 10000 * mel) * np.log(10)) + 4 * np.spacing(np.float32(ref))
    diff = np.abs(ours - ref)
    assert (diff <= bound).all(), f"{(diff > bound).sum()} values off, worst {diff.max():.3g}"
    assert diff.max() < 1e-4
