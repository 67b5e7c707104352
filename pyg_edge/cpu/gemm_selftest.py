"""The GEMM self-test, run in its own process: `python -m pyg_edge.cpu.gemm_selftest BACKEND`.

Enables BACKEND as the runtime would (pyg_edge.cpu.gemm_backend.enable), then sends full-range
u8 x s8 matrices, with the extreme rows and columns that make 16-bit sums saturate, through
cblas_gemm_s8u8s32 as CTranslate2 calls it (row major, weights transposed, a row offset), in
the shapes decode and prompt passes use, and compares every output with the exact integer
product. Backends that keep CTranslate2's packed weights are tested through oneMKL's packed
calls too. Prints one JSON line: {"ok": bool, "cases": N, "detail": "..."}.
"""

import ctypes
import json
import sys

import numpy as np

from pyg_edge.cpu import gemm_backend

ROW_MAJOR, NO_TRANS, TRANS, PACKED, B_MATRIX = 101, 111, 112, 151, 162
ROW_OFFSET, FIX_OFFSET = 171, 173  # mkl_cblas.h
# (rows, columns, depth): one decoded token through the 2.7B's fused QKV and MLP matrices,
# a few tokens (several replies; each row count 2 to 8 has a kernel of its own, with columns
# that leave a remainder after its blocks of weight rows and depths that end in a partial
# block), blocks around the extension's row thresholds, odd sizes, and a prompt pass.
SHAPES = [(1, 7680, 2560), (1, 2560, 10240), (2, 2560, 2560), (3, 1024, 2560), (4, 333, 77),
          (5, 300, 70), (6, 101, 130), (7, 103, 2600), (8, 259, 1000), (64, 2560, 2560),
          (300, 1024, 2560), (257, 129, 33)]

_I64, _PTR = ctypes.c_int64, ctypes.c_void_p
_GEMM_ARGS = [ctypes.c_int] * 4 + [_I64] * 3 + [ctypes.c_float, _PTR, _I64, ctypes.c_int8, _PTR,
                                                 _I64, ctypes.c_int8, ctypes.c_float, _PTR, _I64,
                                                 _PTR]


def case(rng, m: int, n: int, k: int) -> tuple:
    """Random full-range inputs with the worst pairs for 16-bit sums built in."""
    a = rng.integers(0, 256, (m, k), dtype=np.uint8)
    b = rng.integers(-128, 128, (n, k), dtype=np.int8)
    a[0] = 255
    b[0] = -128
    if n > 1:
        b[1] = 127
    if m > 1:
        a[1, ::2] = 255
    offsets = rng.integers(-2**20, 2**20, n, dtype=np.int32)
    # float64 holds these sums exactly (|sum| < 2**53), and numpy multiplies it fast.
    expected = a.astype(np.float64) @ b.astype(np.float64).T + offsets
    return a, b, offsets, expected


def check_unpacked(gemm, rng, shape) -> int:
    m, n, k = shape
    a, b, offsets, expected = case(rng, m, n, k)
    c = np.zeros((m, n), np.int32)
    gemm(ROW_MAJOR, NO_TRANS, TRANS, ROW_OFFSET, m, n, k, 1.0, a.ctypes.data, k, 0,
         b.ctypes.data, k, 0, 0.0, c.ctypes.data, n, offsets.ctypes.data)
    return int(np.count_nonzero(c != expected))


def check_other_layout(gemm, rng) -> int:
    """Weights not transposed and one fixed offset: a combination CTranslate2 never sends,
    which the extension then computes its slow, plain way."""
    m, n, k = 6, 40, 50
    a, b, _, _ = case(rng, m, n, k)
    b_kn = np.ascontiguousarray(b.T)
    offset = np.array([12345], np.int32)
    c = np.zeros((m, n), np.int32)
    gemm(ROW_MAJOR, NO_TRANS, NO_TRANS, FIX_OFFSET, m, n, k, 1.0, a.ctypes.data, k, 0,
         b_kn.ctypes.data, n, 0, 0.0, c.ctypes.data, n, offset.ctypes.data)
    expected = a.astype(np.float64) @ b_kn.astype(np.float64) + offset[0]
    return int(np.count_nonzero(c != expected))


def check_packed(library, rng, shape) -> int:
    """oneMKL's packed path, as CTranslate2 uses it when it packs weights at load."""
    m, n, k = shape
    a, b, offsets, expected = case(rng, m, n, k)
    library.cblas_gemm_s8u8s32_pack_get_size.restype = ctypes.c_size_t
    library.cblas_gemm_s8u8s32_pack_get_size.argtypes = [ctypes.c_int, _I64, _I64, _I64]
    size = library.cblas_gemm_s8u8s32_pack_get_size(B_MATRIX, 1, n, k)
    packed = np.zeros(size, np.uint8)
    library.cblas_gemm_s8u8s32_pack.argtypes = [ctypes.c_int] * 3 + [_I64] * 3 + [_PTR, _I64,
                                                                                 _PTR]
    library.cblas_gemm_s8u8s32_pack(ROW_MAJOR, B_MATRIX, TRANS, 1, n, k, b.ctypes.data, k,
                                    packed.ctypes.data)
    c = np.zeros((m, n), np.int32)
    library.cblas_gemm_s8u8s32_compute.argtypes = _GEMM_ARGS
    library.cblas_gemm_s8u8s32_compute(ROW_MAJOR, NO_TRANS, PACKED, ROW_OFFSET, m, n, k, 1.0,
                                       a.ctypes.data, k, 0, packed.ctypes.data, k, 0, 0.0,
                                       c.ctypes.data, n, offsets.ctypes.data)
    return int(np.count_nonzero(c != expected))


def main(backend: str) -> dict:
    shim = gemm_backend.enable(backend)
    gemm = shim.cblas_gemm_s8u8s32  # the definition CTranslate2's calls resolve to
    gemm.argtypes, gemm.restype = _GEMM_ARGS, None
    rng = np.random.default_rng(20261130)
    failures = []
    for shape in SHAPES:
        wrong = check_unpacked(gemm, rng, shape)
        if wrong:
            failures.append(f"{wrong} of {shape[0] * shape[1]} outputs wrong at {shape}")
    wrong = check_other_layout(gemm, rng)
    if wrong:
        failures.append(f"{wrong} outputs wrong with untransposed weights and a fixed offset")
    if not gemm_backend.shim_setting(backend).exact:
        library = ctypes.CDLL(str(gemm_backend.ctranslate2_libraries()[0]))
        for shape in SHAPES[:2] + SHAPES[6:7]:
            wrong = check_packed(library, rng, shape)
            if wrong:
                failures.append(f"packed: {wrong} of {shape[0] * shape[1]} wrong at {shape}")
    return {"ok": not failures, "cases": len(SHAPES),
            "detail": "; ".join(failures) or "every product exact"}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
