"""Every kind of bad input gets a clear error naming the problem, never a crash."""

from __future__ import annotations

import numpy as np
import pytest

import musemo
from musemo import ParameterError

Y = np.zeros(4096, dtype=np.float32)


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.uint8, np.bool_])
def test_integer_audio_is_refused(dtype):
    with pytest.raises(ParameterError, match=f"floating-point audio, got dtype {np.dtype(dtype)}"):
        musemo.melspectrogram(y=np.zeros(4096, dtype=dtype))


def test_integer_audio_error_suggests_the_conversion():
    with pytest.raises(ParameterError, match="32768"):
        musemo.stft_power(np.zeros(4096, dtype=np.int16))


def test_complex_audio_is_refused():
    with pytest.raises(ParameterError, match="complex"):
        musemo.stft_power(np.zeros(4096, dtype=np.complex64))


def test_lists_are_refused():
    with pytest.raises(ParameterError, match="numpy.ndarray, got list"):
        musemo.stft_power([0.0] * 4096)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", [0, 2047, 4095])
def test_non_finite_samples_are_refused_with_their_position(kernel_set, bad, where):
    y = Y.copy()
    y[where] = bad
    with pytest.raises(ParameterError, match=f"not finite everywhere: sample {where} is {bad}"):
        musemo.melspectrogram(y=y)


def test_non_finite_sample_in_a_channel_names_the_channel():
    y = np.zeros((2, 3, 1000), np.float32)
    y[1, 2, 17] = np.nan
    with pytest.raises(ParameterError, match=r"sample 17 of channel \(1, 2\) is nan"):
        musemo.stft_power(y)


def test_float64_beyond_float32_range_is_refused():
    y = np.zeros(4096)
    y[5] = 1e300
    with pytest.raises(ParameterError, match="sample 5 is 1e\\+300 \\(beyond the float32 range\\)"):
        musemo.melspectrogram(y=y)


@pytest.mark.parametrize("shape", [(0,), (2, 0), (0, 100)])
def test_empty_arrays_are_refused(shape):
    with pytest.raises(ParameterError, match="empty"):
        musemo.melspectrogram(y=np.zeros(shape, np.float32))


def test_scalar_is_refused():
    with pytest.raises(ParameterError, match="scalar"):
        musemo.stft_power(np.array(1.0, np.float32))


def test_too_short_for_one_uncentred_frame():
    with pytest.raises(
        ParameterError, match="n_fft=2048 is too large for uncentered analysis of a signal of 2047"
    ):
        musemo.melspectrogram(y=np.zeros(2047, np.float32), center=False)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_fft": 0}, "n_fft=0"),
        ({"n_fft": -2048}, "n_fft=-2048"),
        ({"n_fft": 2000}, "n_fft=2000: musemo supports powers of two"),
        ({"n_fft": 1 << 17}, "powers of two from 4 to 65536"),
        ({"n_fft": 2048.0}, "n_fft=2048.0: must be an integer"),
        ({"hop_length": 0}, "hop_length=0"),
        ({"hop_length": -512}, "hop_length=-512"),
        ({"win_length": 0}, "win_length=0"),
        ({"win_length": 4096}, "win_length=4096 must be <= n_fft=2048"),
        ({"pad_mode": "wrap"}, "pad_mode='wrap' is not supported"),
        ({"window": "hannn"}, "unsupported window='hannn'"),
        ({"power": 0.0}, "power=0.0"),
        ({"power": np.nan}, "power=nan"),
        ({"center": "yes"}, "center='yes'"),
        ({"threads": 0}, "threads=0"),
        ({"power": "2"}, "power='2'"),
        ({"hop_length": None, "win_length": 3, "n_fft": 4}, "default win_length // 4 is 0"),
    ],
)
def test_bad_stft_settings(kwargs, message):
    with pytest.raises(ParameterError, match=message.replace("(", r"\(").replace(")", r"\)")):
        musemo.stft_power(Y, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fmax": 30000.0}, "fmax=30000.0 is above the Nyquist frequency sr/2 = 22050.0"),
        ({"fmax": 100.0, "fmin": 200.0}, "fmax=100.0: must be a finite frequency above fmin=200.0"),
        ({"fmin": -1.0}, "fmin=-1.0"),
        ({"n_mels": 0}, "n_mels=0"),
        ({"sr": 0}, "sr=0"),
        ({"sr": -44100}, "sr=-44100"),
        ({"norm": "l2"}, "norm='l2'"),
        ({"sr": "44100"}, "sr='44100'"),
        ({"fmin": "0"}, "fmin='0'"),
        ({"fmax": np.nan}, "fmax=nan"),
    ],
)
def test_bad_mel_settings(kwargs, message):
    kwargs = {"sr": 44100, **kwargs}
    with pytest.raises(ParameterError, match=message):
        musemo.melspectrogram(y=Y, **kwargs)


def test_y_and_S_together_are_refused():
    with pytest.raises(ParameterError, match="either y or S"):
        musemo.melspectrogram(y=Y, S=np.ones((1025, 3)))


def test_neither_y_nor_S():
    with pytest.raises(ParameterError, match="needs y"):
        musemo.melspectrogram()


def test_power_to_db_refuses_complex_and_bad_amin():
    with pytest.raises(ParameterError, match="real floating-point"):
        musemo.power_to_db(np.ones(3, np.complex64))
    with pytest.raises(ParameterError, match="amin=0"):
        musemo.power_to_db(np.ones(3), amin=0)


def test_empty_mel_filters_warn():
    with pytest.warns(UserWarning, match="Empty filters"):
        musemo.mel_filters(sr=8000, n_fft=64, n_mels=128)


# Arrays that are legal but awkward must give the same answer as a plain copy.


def test_non_contiguous_input(one_second_tonal_44k):
    y2 = np.repeat(one_second_tonal_44k[:, None], 2, axis=1)  # (n, 2): each channel strided
    strided = y2[:, 0]
    assert not strided.flags.c_contiguous
    np.testing.assert_array_equal(
        musemo.melspectrogram(y=strided, sr=44100),
        musemo.melspectrogram(y=strided.copy(), sr=44100),
    )
    np.testing.assert_array_equal(
        musemo.stft_power(y2.T), musemo.stft_power(np.ascontiguousarray(y2.T))
    )


def test_read_only_input(one_second_tonal_44k):
    y = one_second_tonal_44k.copy()
    y.flags.writeable = False
    np.testing.assert_array_equal(
        musemo.melspectrogram(y=y, sr=44100), musemo.melspectrogram(y=y.copy(), sr=44100)
    )


def test_big_endian_and_float16_input(one_second_tonal_44k):
    y = one_second_tonal_44k
    ref = musemo.stft_power(y)
    np.testing.assert_array_equal(musemo.stft_power(y.astype(">f4")), ref)
    assert musemo.stft_power(y.astype(np.float16)).dtype == np.float32
