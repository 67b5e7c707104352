"""Reads safetensors files with plain reads: an 8-byte header length, a JSON header, raw data."""

import json
import math
import os
import struct

import numpy as np

from pyg_edge_convert.errors import ConversionError
from pyg_edge_convert.tensors import NUMPY_DTYPES, TensorRef

# Real headers are a few hundred KB; anything far larger is not a safetensors file.
_MAX_HEADER_BYTES = 100 * 1024 * 1024


def read_safetensors(path: str) -> dict:
    """Lists the tensors of one safetensors file without reading their data.

    Returns:
      A dict of state-dict key to TensorRef.

    Raises:
      ConversionError: the file is truncated, malformed or holds an unknown dtype.
    """
    name = os.path.basename(path)
    file_size = os.path.getsize(path)
    header, data_start = _read_header(path, name, file_size)
    tensors = {}
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        begin, end, shape, dtype = _parse_entry(name, key, entry)
        if data_start + end > file_size:
            raise ConversionError(
                f"{name} is truncated: tensor {key} ends at byte {data_start + end}, "
                f"the file has {file_size}"
            )
        tensors[key] = TensorRef(
            name=key,
            shape=shape,
            dtype=dtype,
            read=_reader(path, data_start + begin, shape, NUMPY_DTYPES[dtype]),
            source=name,
        )
    return tensors


def _read_header(path: str, name: str, file_size: int) -> tuple:
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise ConversionError(f"{name} is truncated: it has no safetensors header")
        (length,) = struct.unpack("<Q", prefix)
        if length > min(file_size - 8, _MAX_HEADER_BYTES):
            raise ConversionError(
                f"{name} is truncated or not a safetensors file: its header claims "
                f"{length} bytes, the file has {file_size}"
            )
        raw = f.read(length)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConversionError(f"{name} has a malformed safetensors header: {error}") from None
    if not isinstance(header, dict):
        raise ConversionError(f"{name} has a malformed safetensors header: not a JSON object")
    return header, 8 + length


def _parse_entry(name: str, key: str, entry) -> tuple:
    try:
        dtype = entry["dtype"]
        shape = tuple(int(d) for d in entry["shape"])
        begin, end = (int(o) for o in entry["data_offsets"])
    except (KeyError, TypeError, ValueError):
        raise ConversionError(f"{name} has a malformed header entry for tensor {key}") from None
    if dtype not in NUMPY_DTYPES:
        raise ConversionError(
            f"{name}: tensor {key} has dtype {dtype}; expected one of: "
            + ", ".join(NUMPY_DTYPES)
        )
    expected = math.prod(shape) * NUMPY_DTYPES[dtype].itemsize
    if begin < 0 or end - begin != expected or min(shape, default=0) < 0:
        raise ConversionError(
            f"{name}: tensor {key} spans bytes {begin}..{end} but its shape {list(shape)} "
            f"and dtype {dtype} need {expected}"
        )
    return begin, end, shape, dtype


def _reader(path: str, offset: int, shape: tuple, dtype: np.dtype):
    def read() -> np.ndarray:
        # Plain reads keep resident memory to the tensor itself, where mmap would keep
        # every touched file page mapped into the process.
        array = np.empty(shape, dtype=dtype)
        with open(path, "rb") as f:
            f.seek(offset)
            if f.readinto(memoryview(array).cast("B")) != array.nbytes:
                raise ConversionError(f"{os.path.basename(path)} is truncated")
        return array

    return read


def write_safetensors(path: str, tensors: dict, dtypes: dict = None) -> None:
    """Writes numpy arrays as a safetensors file (for benchmarks and tests, no torch needed).

    Args:
      path: The file to write.
      tensors: Name to array; arrays are written in their own dtype.
      dtypes: Optional name to safetensors dtype, for uint16 arrays that hold "BF16" bits.
    """
    by_numpy = {np.dtype(v): k for k, v in NUMPY_DTYPES.items() if k != "BF16"}
    layout = {
        name: ((dtypes or {}).get(name) or by_numpy[array.dtype], array.shape)
        for name, array in tensors.items()
    }
    write_safetensors_streaming(path, layout, tensors.__getitem__)


def write_safetensors_streaming(path: str, layout: dict, produce) -> None:
    """Writes a safetensors file whose tensors are made one at a time.

    Args:
      path: The file to write.
      layout: Name to (safetensors dtype, shape), in file order.
      produce: produce(name) returns that tensor as a numpy array of the matching dtype.
    """
    header, offset = {}, 0
    for name, (dtype, shape) in layout.items():
        size = math.prod(shape) * NUMPY_DTYPES[dtype].itemsize
        header[name] = {
            "dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]
        }
        offset += size
    raw = json.dumps(header).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # the format aligns data to 8 bytes
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for name in layout:
            array = np.ascontiguousarray(produce(name))
            if array.nbytes != header[name]["data_offsets"][1] - header[name]["data_offsets"][0]:
                raise ValueError(f"tensor {name} does not match its layout")
            f.write(memoryview(array.reshape(-1)).cast("B"))
