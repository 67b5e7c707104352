"""Reads torch.save zip checkpoints without torch, through an unpickler that runs no code.

A checkpoint is untrusted input: a plain pickle.load would call whatever the file names.
The unpickler here resolves only the handful of globals a state dict needs, each to a
harmless stand-in of ours, and refuses everything else before it is called.
"""

import math
import os
import pickle
import zipfile

import numpy as np

from pyg_edge_convert.errors import ConversionError
from pyg_edge_convert.tensors import NUMPY_DTYPES, TensorRef

_STORAGE_DTYPES = {
    "FloatStorage": "F32",
    "HalfStorage": "F16",
    "BFloat16Storage": "BF16",
    "DoubleStorage": "F64",
    "LongStorage": "I64",
    "IntStorage": "I32",
    "ShortStorage": "I16",
    "CharStorage": "I8",
    "ByteStorage": "U8",
    "BoolStorage": "BOOL",
}


class _StorageType:
    def __init__(self, dtype: str):
        self.dtype = dtype


class _Storage:
    """One storage record of the archive: its file, dtype and element count."""

    def __init__(self, member: str, dtype: str, numel: int):
        self.member, self.dtype, self.numel = member, dtype, numel


class _Tensor:
    """What _rebuild_tensor_v2 returns here: where a tensor's data lies, not the data."""

    def __init__(self, storage, offset, shape, stride):
        self.storage, self.offset = storage, int(offset)
        self.shape = tuple(int(d) for d in shape)
        self.stride = tuple(int(s) for s in stride)


def _rebuild_tensor(storage, offset, shape, stride, *_ignored):
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError("a tensor refers to no storage")
    if len(shape) != len(stride) or min(stride, default=0) < 0:
        raise pickle.UnpicklingError("a tensor has a malformed shape or stride")
    return _Tensor(storage, offset, shape, stride)


def _rebuild_parameter(data, *_ignored):
    return data


class _StateDict(dict):
    """A dict that, like OrderedDict, takes the attributes (_metadata) pickles set on it."""


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): _StateDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(dtype) for name, dtype in _STORAGE_DTYPES.items()},
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, data_prefix: str):
        super().__init__(file)
        self._data_prefix = data_prefix

    def find_class(self, module, name):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"it asks for {module}.{name}, which a state dict never needs"
            ) from None

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r:.60}")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError("a storage has no known dtype")
        return _Storage(f"{self._data_prefix}{key}", storage_type.dtype, int(numel))


def read_torch_zip(path: str) -> dict:
    """Lists the tensors of a torch zip checkpoint (pytorch_model.bin) without reading them.

    Returns:
      A dict of state-dict key to TensorRef.

    Raises:
      ConversionError: the file is truncated, not a torch zip, or its pickle asks for code.
    """
    name = os.path.basename(path)
    archive = _open_zip(path, name)
    pickle_member = next((m for m in archive.namelist() if m.endswith("/data.pkl")), None)
    if pickle_member is None:
        raise ConversionError(f"{name} is a zip file but not a torch checkpoint (no data.pkl)")
    data_prefix = pickle_member[: -len("data.pkl")] + "data/"
    try:
        with archive.open(pickle_member) as f:
            state = _RestrictedUnpickler(f, data_prefix).load()
    except pickle.UnpicklingError as error:
        raise ConversionError(f"{name} refused, its pickle is unsafe or broken: {error}") from None
    except Exception as error:  # noqa: BLE001  malformed data fails in many ways, none runs code
        reason = f"{type(error).__name__}: {error}"
        raise ConversionError(f"{name} has a broken pickle: {reason}") from None
    if not isinstance(state, dict):
        raise ConversionError(f"{name} does not hold a state dict")
    members = set(archive.namelist())
    return {
        key: _tensor_ref(path, name, members, key, value)
        for key, value in state.items()
        if isinstance(value, _Tensor)
    }


def _open_zip(path: str, name: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        with open(path, "rb") as f:
            magic = f.read(2)
        if magic == b"\x80\x02":
            raise ConversionError(
                f"{name} uses torch's legacy (pre-1.6) format; save it again as safetensors"
            ) from None
        raise ConversionError(f"{name} is truncated or not a torch zip checkpoint") from None


def _tensor_ref(path, name, members, key, tensor: _Tensor) -> TensorRef:
    storage = tensor.storage
    if storage.member not in members:
        raise ConversionError(f"{name} is missing the data of tensor {key}")
    last = sum((d - 1) * s for d, s in zip(tensor.shape, tensor.stride, strict=True))
    extent = tensor.offset + last + 1
    if math.prod(tensor.shape) and (tensor.offset < 0 or extent > storage.numel):
        raise ConversionError(f"{name}: tensor {key} reaches past the end of its storage")
    return TensorRef(
        name=key,
        shape=tensor.shape,
        dtype=storage.dtype,
        read=lambda: _read_tensor(path, name, key, tensor),
        source=name,
    )


def _read_tensor(path, name, key, tensor: _Tensor) -> np.ndarray:
    storage = tensor.storage
    dtype = NUMPY_DTYPES[storage.dtype]
    try:
        with zipfile.ZipFile(path) as archive:
            raw = archive.read(storage.member)
    except (zipfile.BadZipFile, OSError) as error:
        raise ConversionError(f"{name}: cannot read tensor {key}: {error}") from None
    if len(raw) != storage.numel * dtype.itemsize:
        raise ConversionError(f"{name}: the data of tensor {key} is truncated")
    flat = np.frombuffer(raw, dtype=dtype)
    strides = tuple(s * dtype.itemsize for s in tensor.stride)
    view = np.lib.stride_tricks.as_strided(flat[tensor.offset :], tensor.shape, strides)
    return np.array(view)
