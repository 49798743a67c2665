"""Reading a TensorFlow checkpoint bundle without TensorFlow: the musicnn wheel's, and
damaged copies of it. Torch-free (it runs against the sanitized engine too)."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from musemo import ParameterError
from musemo.training.tf_bundle import crc32c, masked_crc32c, read_index, read_tensors


def _bitwise_crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def test_crc32c_known_values():
    assert crc32c(b"123456789") == 0xE3069283  # the standard check value
    assert crc32c(b"") == 0
    data = np.random.default_rng(0).bytes(100)
    for n in range(41):  # 8-byte steps and the byte tail, against the bitwise definition
        assert crc32c(data[:n]) == _bitwise_crc32c(data[:n])
    assert crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720's 32 zero bytes
    # any contiguous buffer is its bytes; a strided view is refused before the engine
    assert crc32c(np.zeros(4, np.float32)) == crc32c(bytes(16))
    with pytest.raises(ParameterError, match="contiguous bytes"):
        crc32c(np.zeros(8, np.uint8)[::2])


def test_the_index_lists_every_variable(bundle):
    entries = read_index(bundle[0])
    assert len(entries) == 150
    model_vars = {k: e for k, e in entries.items() if "Adam" not in k and not k.startswith("beta")}
    assert len(model_vars) == 64  # the rest: Adam's slots and its beta1/beta2 powers
    trainable = sum(
        int(np.prod(e.shape))
        for k, e in model_vars.items()
        if not k.endswith(("moving_mean", "moving_variance"))
    )
    statistics = sum(
        int(np.prod(e.shape))
        for k, e in model_vars.items()
        if k.endswith(("moving_mean", "moving_variance"))
    )
    assert (trainable, statistics) == (787_159, 4_920)
    assert entries["conv2d/kernel"].shape == (7, 38, 1, 204)


def test_every_tensor_passes_its_checksum(bundle):
    tensors = read_tensors(*bundle)
    assert tensors["dense_1/kernel"].shape == (200, 50)
    assert all(np.isfinite(t).all() for t in tensors.values())


def test_a_damaged_tensor_is_refused_by_name(bundle):
    index, data = bundle
    entry = read_index(index)["conv2d_5/kernel"]
    damaged = bytearray(data)
    damaged[entry.offset + 100] ^= 0x01
    with pytest.raises(ParameterError, match="conv2d_5/kernel fails its CRC-32C"):
        read_tensors(index, bytes(damaged))
    with pytest.raises(ParameterError, match="do not fit shape"):
        read_tensors(index, data[: entry.offset + 10])


def test_a_damaged_index_is_refused(bundle):
    index = bytearray(bundle[0])
    index[40] ^= 0xFF  # inside the first block: its checksum fails
    with pytest.raises(ParameterError, match="CRC-32C"):
        read_tensors(bytes(index), bundle[1])
    with pytest.raises(ParameterError, match="magic"):
        read_tensors(bundle[0][:-1] + b"\0", bundle[1])
    with pytest.raises(ParameterError, match="has no tensor nothing/here"):
        read_tensors(*bundle, names=["nothing/here"])


def test_masked_crc_is_leveldbs():
    crc = crc32c(b"abc")
    assert masked_crc32c(b"abc") == ((((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)
    assert struct.pack("<I", masked_crc32c(b"")) == struct.pack("<I", 0xA282EAD8)
