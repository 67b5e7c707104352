"""Scoring (forward_batch/score_batch) on models converted with a prefill chunk.

CTranslate2's decoder-level sliding window (the prefill chunk, pyg_edge.generation.prefill)
breaks forward_batch and score_batch on inputs longer than the chunk ("buffer to copy is of
size ..."). Those read the whole input at once with no cache, which the exact local
attention handles on its own, so scoring loads the same weights with the chunk set to 0:
model.bin is read into memory, that one scalar is patched there and the bytes go to
CTranslate2 (Generator(files=...)), so no second copy of the model is written to disk.
The price is twice the file's size in memory while the model loads. Benchmarks and tests
use it (pytest's path has benchmarks/); it is not shipped in the package.
"""

import os
import struct

from pyg_edge.cpu.backend_choice import load_ctranslate2
from pyg_edge.generation.model_folder import read_metadata

CHUNK_VARIABLE = "decoder/sliding_window"
# The converter writes the decoder's scalars first; the chunk is among the first few.
_SCALARS_SEARCHED = 64
_MODEL_FILES = ("config.json", "vocabulary.json")


def scoring_generator(path, ctranslate2=None, **kwargs):
    """A ctranslate2.Generator on a converted model whose forward_batch reads any length.

    Args:
      path: A converted model folder.
      ctranslate2: The ctranslate2 module to use (default: pyg-edge's, with its GEMM
        backend chosen as for PygModel).
      **kwargs: Passed to ctranslate2.Generator (device, compute_type, ...).
    """
    if ctranslate2 is None:
        ctranslate2 = load_ctranslate2()
    path = os.fspath(path)
    if not read_metadata(path).get("prefill_chunk"):
        return ctranslate2.Generator(path, **kwargs)
    files = {name: _read(path, name) for name in _MODEL_FILES}
    model_bin = bytearray(_read(path, "model.bin"))
    clear_prefill_chunk(model_bin)
    files["model.bin"] = bytes(model_bin)  # Generator(files=) takes bytes, not a bytearray
    del model_bin
    return ctranslate2.Generator(path, files=files, **kwargs)


def clear_prefill_chunk(data: bytearray) -> None:
    """Sets decoder/sliding_window to 0 in a model.bin (binary version 6) held in memory.

    Raises:
      ValueError: the file has no such int32 scalar among its first variables.
    """
    offset = 4  # the binary version
    _, offset = _string(data, offset)  # the spec name
    offset += 8  # revision, variable count
    for _ in range(_SCALARS_SEARCHED):
        name, offset = _string(data, offset)
        ndim = data[offset]
        offset += 1 + 4 * ndim
        type_id, size = struct.unpack_from("<BI", data, offset)
        offset += 5
        if name == CHUNK_VARIABLE and ndim == 0 and type_id == 3 and size == 4:  # int32
            struct.pack_into("<i", data, offset, 0)
            return
        offset += size
    raise ValueError(f"model.bin has no {CHUNK_VARIABLE} scalar among its first variables")


def _string(data: bytearray, offset: int) -> tuple:
    (length,) = struct.unpack_from("<H", data, offset)
    start = offset + 2
    return data[start:start + length - 1].decode("utf-8"), start + length


def _read(path: str, name: str) -> bytes:
    with open(os.path.join(path, name), "rb") as f:
        return f.read()
