"""Writes CTranslate2's model.bin one variable at a time.

ctranslate2.specs can save a model too, but it holds every weight in memory until the
end, imports torch when torch is installed, and needs torch to write bfloat16. This
writer follows the same binary layout (version 6) so that memory stays at one tensor.
"""

import struct

import numpy as np

BINARY_VERSION = 6
# Order of CTranslate2's DataType enum (include/ctranslate2/types.h).
_TYPE_IDS = {"float32": 0, "int8": 1, "int16": 2, "int32": 3, "float16": 4, "bfloat16": 5}


class ModelBinWriter:
    """Streams variables into a model.bin; use as a context manager.

    Args:
      target: The file to write: a path, or a seekable binary file (left open by close()).
      spec_name: The model spec's name, e.g. "TransformerDecoderSpec".
      revision: The spec's revision.
    """

    def __init__(self, target, spec_name: str, revision: int):
        self._owns_file = not hasattr(target, "write")
        self._file = open(target, "wb") if self._owns_file else target
        self._count = 0
        self._aliases = []
        self._file.write(struct.pack("<I", BINARY_VERSION))
        self._write_string(spec_name)
        self._file.write(struct.pack("<I", revision))
        self._count_offset = self._file.tell()
        self._file.write(struct.pack("<I", 0))  # patched on close
        self.bytes_written = 0

    def add(self, name: str, value: np.ndarray, dtype: str = "") -> None:
        """Writes one variable; dtype "bfloat16" marks uint16 bfloat16 bits."""
        value = np.asarray(value)
        if not value.flags.c_contiguous:
            value = value.copy()
        dtype = dtype or value.dtype.name
        self._write_string(name)
        self._file.write(struct.pack("<B", value.ndim))
        self._file.write(struct.pack(f"<{value.ndim}I", *value.shape))
        self._file.write(struct.pack("<BI", _TYPE_IDS[dtype], value.nbytes))
        self._file.write(memoryview(value.reshape(-1)).cast("B"))
        self._count += 1
        self.bytes_written += value.nbytes

    def alias(self, name: str, target: str) -> None:
        """Makes `name` load as the variable `target` (tied weights)."""
        self._aliases.append((name, target))

    def close(self) -> None:
        self._file.write(struct.pack("<I", len(self._aliases)))
        for name, target in self._aliases:
            self._write_string(name)
            self._write_string(target)
        end = self._file.tell()
        self._file.seek(self._count_offset)
        self._file.write(struct.pack("<I", self._count))
        self._file.seek(end)
        if self._owns_file:
            self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        if exc_type is None:
            self.close()
        elif self._owns_file:
            self._file.close()

    def _write_string(self, text: str) -> None:
        data = text.encode("utf-8") + b"\0"
        self._file.write(struct.pack("<H", len(data)) + data)
