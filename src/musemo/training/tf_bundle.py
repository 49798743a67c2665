"""Read a TensorFlow checkpoint bundle (``NAME.index`` + ``NAME.data-00000-of-00001``)
with numpy alone.

The ``.index`` file is a LevelDB table (blocks of prefix-compressed keys, an index
block, a 48-byte footer) mapping each variable's name to a ``BundleEntryProto``:
dtype, shape, offset and size in the data file, and a masked CRC-32C of its bytes.
Only what a bundle of dense tensors in one shard needs is read; anything else
(compressed blocks, sliced or string tensors, several shards) is refused by name.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .. import _native
from ..errors import ParameterError

_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_SIZE = 48
_BLOCK_TRAILER = 5  # compression type byte + masked crc32c
# TensorFlow's DataType enum values of the dtypes a model's weights use.
_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 9: np.int64, 19: np.float16}


def crc32c(data) -> int:
    """CRC-32C (Castagnoli) of the bytes of a contiguous bytes-like object."""
    view = memoryview(data)
    if not view.c_contiguous:
        raise ParameterError("crc32c takes contiguous bytes (a non-contiguous view was given)")
    return _native.crc32c(view.cast("B") if view.ndim != 1 or view.itemsize != 1 else view)


def masked_crc32c(data: bytes | memoryview) -> int:
    """LevelDB's masked CRC-32C, as stored in table blocks and bundle entries."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    """(value, next position) of the unsigned LEB128 varint at ``pos``."""
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated or overlong varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _proto_fields(buf: memoryview) -> Iterator[tuple[int, int | memoryview]]:
    """(field number, value) of a protobuf message: ints for varint and fixed32
    fields, the bytes of length-delimited ones."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + size], pos + size
        elif wire == 5:
            (value,), pos = struct.unpack_from("<I", buf, pos), pos + 4
        elif wire == 1:
            (value,), pos = struct.unpack_from("<Q", buf, pos), pos + 8
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield field, value


@dataclass(frozen=True)
class BundleEntry:
    """Where one tensor lies in the data file, and what it is."""

    name: str
    dtype: type
    shape: tuple[int, ...]
    offset: int
    size: int
    crc32c: int


def _shape(buf: memoryview) -> tuple[int, ...]:
    dims = []
    for field, value in _proto_fields(buf):
        if field == 2:  # TensorShapeProto.dim
            size = dict(_proto_fields(value)).get(1, 0)
            dims.append(size)
        elif field == 3 and value:
            raise ValueError("tensor of unknown rank")
    return tuple(dims)


def _entry(name: str, buf: memoryview) -> BundleEntry:
    fields: dict[int, object] = {1: 1, 2: memoryview(b""), 3: 0, 4: 0, 5: 0, 6: 0}
    for field, value in _proto_fields(buf):
        if field == 7:
            raise ValueError("sliced (partitioned) tensors are not supported")
        fields[field] = value
    if fields[1] not in _DTYPES:
        raise ValueError(f"unsupported dtype enum {fields[1]}")
    if fields[3] != 0:
        raise ValueError("tensors in several shards are not supported")
    return BundleEntry(name, _DTYPES[fields[1]], _shape(fields[2]), fields[4], fields[5], fields[6])


def _block(data: memoryview, offset: int, size: int) -> memoryview:
    """The contents of one table block, its trailer checked."""
    end = offset + size
    if end + _BLOCK_TRAILER > len(data):
        raise ValueError("block past the end of the file")
    kind = data[end]
    (stored,) = struct.unpack_from("<I", data, end + 1)
    if masked_crc32c(data[offset : end + 1]) != stored:
        raise ValueError(f"block at byte {offset} fails its CRC-32C")
    if kind != 0:
        raise ValueError("compressed table blocks are not supported")
    return data[offset:end]


def _block_entries(block: memoryview) -> Iterator[tuple[bytes, memoryview]]:
    """(key, value) pairs of a block, its prefix-compressed keys expanded."""
    (n_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    end = len(block) - 4 - 4 * n_restarts
    pos, key = 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        size, pos = _varint(block, pos)
        key = key[:shared] + bytes(block[pos : pos + unshared])
        pos += unshared
        yield key, block[pos : pos + size]
        pos += size


def _handle(buf: memoryview, pos: int = 0) -> tuple[int, int, int]:
    offset, pos = _varint(buf, pos)
    size, pos = _varint(buf, pos)
    return offset, size, pos


def read_index(index: bytes) -> dict[str, BundleEntry]:
    """The entries of a bundle's ``.index`` file, by tensor name.

    Raises
    ------
    ValueError
        When the bytes are not an uncompressed single-shard bundle index, or a block
        fails its checksum.
    """
    data = memoryview(index)
    if len(data) < _FOOTER_SIZE:
        raise ValueError("too short to be a checkpoint index")
    footer = data[len(data) - _FOOTER_SIZE :]
    if struct.unpack_from("<Q", footer, 40)[0] != _TABLE_MAGIC:
        raise ValueError("no LevelDB table magic number at the end")
    _meta_offset, _meta_size, pos = _handle(footer)
    index_offset, index_size, _ = _handle(footer, pos)
    entries = {}
    for _last_key, handle in _block_entries(_block(data, index_offset, index_size)):
        offset, size, _ = _handle(handle)
        for key, value in _block_entries(_block(data, offset, size)):
            if key:  # the empty key holds the BundleHeaderProto
                name = key.decode()
                entries[name] = _entry(name, value)
    return entries


def read_tensors(
    index: bytes, data: bytes, names: list[str] | None = None
) -> dict[str, np.ndarray]:
    """Tensors of a bundle (``names``, or all of them), each checked against its CRC-32C.

    Raises
    ------
    ParameterError
        A name the bundle lacks, or a tensor whose bytes are cut short or fail their
        checksum, named.
    """
    try:
        entries = read_index(index)
    except ValueError as exc:
        raise ParameterError(f"unreadable checkpoint index: {exc}") from exc
    missing = sorted(set(names or ()) - set(entries))
    if missing:
        raise ParameterError(f"the checkpoint has no tensor {', '.join(missing)}")
    view = memoryview(data)
    tensors = {}
    for name in names if names is not None else sorted(entries):
        e = entries[name]
        count = int(np.prod(e.shape, dtype=np.int64))
        if e.size != count * np.dtype(e.dtype).itemsize or e.offset + e.size > len(view):
            raise ParameterError(
                f"tensor {name}: {e.size} bytes at {e.offset} do not fit shape {e.shape}"
            )
        raw = view[e.offset : e.offset + e.size]
        if masked_crc32c(raw) != e.crc32c:
            raise ParameterError(f"tensor {name} fails its CRC-32C check (a damaged checkpoint)")
        tensors[name] = (
            np.frombuffer(raw, dtype=np.dtype(e.dtype).newbyteorder("<")).reshape(e.shape).copy()
        )
    return tensors
