"""A lazily read checkpoint tensor, and the dtype conversions the converter needs, in numpy."""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# Checkpoint dtypes as safetensors names them; bfloat16 is read as raw uint16 bits.
NUMPY_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
FLOAT_DTYPES = ("F32", "F16", "BF16")


@dataclass(frozen=True)
class TensorRef:
    """A tensor in a checkpoint, read only when asked.

    Attributes:
      name: The state-dict key.
      shape: The tensor's shape.
      dtype: Its stored dtype, a key of NUMPY_DTYPES.
      read: Returns the tensor as a numpy array of the stored dtype.
      source: The file it lives in, for error messages.
    """

    name: str
    shape: tuple
    dtype: str
    read: Callable[[], np.ndarray]
    source: str

    def float32(self) -> np.ndarray:
        """Reads the tensor and widens it to float32 (exactly, for every float dtype)."""
        array = self.read()
        if self.dtype == "BF16":
            return (array.astype(np.uint32) << 16).view(np.float32)
        return array.astype(np.float32, copy=False)


def float32_to_bfloat16_bits(array: np.ndarray) -> np.ndarray:
    """Rounds float32 to bfloat16 (nearest, ties to even) and returns the bits as uint16."""
    bits = np.ascontiguousarray(array, dtype=np.float32).view(np.uint32)
    rounding = ((bits >> 16) & 1) + np.uint32(0x7FFF)
    rounded = ((bits + rounding) >> 16).astype(np.uint16)
    # Rounding a NaN could carry into the exponent and make it infinite: keep it a NaN.
    return np.where(np.isnan(array), np.uint16(0x7FC0), rounded)


def quantize_int8_rows(weight: np.ndarray) -> tuple:
    """Quantizes a float32 matrix to int8 with one scale per row, as CTranslate2 does.

    Returns:
      (int8 weights, float32 scales) such that weight ~= int8 / scale.
    """
    amax = np.abs(weight).max(axis=1)
    amax[amax == 0] = 127.0
    amax = np.maximum(amax, np.float32(127) / np.finfo(np.float32).max)
    scale = (np.float32(127.0) / amax).astype(np.float32)
    scaled = weight * scale[:, None]
    np.rint(scaled, out=scaled)
    return scaled.astype(np.int8), scale
