"""The process-wide settings pyg-edge makes, in one place, made once: at the host's start
(prepare), or with the defaults when the first model loads.

An app that embeds pyg-edge calls prepare() at its start, before anything imports
ctranslate2 (faster-whisper, say). What it changes, each for the whole process:
- the int8 GEMM backend CTranslate2 runs (pyg_edge.cpu.backend_choice): environment
  variables CT2_USE_MKL / CT2_PACKED_GEMM / MKL_DISABLE_FAST_MM, and on x86-64 Linux the
  C extension loaded with RTLD_GLOBAL ahead of CTranslate2, overriding oneMKL's CPU
  detection and its int8 GEMM. This is what makes int8 exact on AVX2 CPUs without VNNI;
  where no int8 path passes the check, int8 models run in float32 or int16 instead;
- for the `pyg-edge` command (or keep_heap=True), on glibc, malloc settings
  (pyg_edge.cpu.tuning: one arena, no mmap of large blocks, no trimming): a long prompt
  pass 26.6 -> 12.9 s on the 2.7B shape. They keep the host's own freed memory too, so an
  app's process gets CTranslate2's own allocation entries pointed at a cache of large
  blocks instead (pyg_edge.cpu.block_cache): the host's malloc is left as it was;
- CTranslate2's own memcpy/memmove entries pointed at a copy that streams large copies
  (pyg_edge.cpu.copy_tuning.install_copy: the key/value cache copy of each decode step);
  not process-wide, and what glibc's copy threshold does for the `pyg-edge` command.
Figures: docs/embedding.md and benchmarks/results/.
"""

import logging
import os
import sys
from dataclasses import dataclass

from pyg_edge.cpu import backend_choice, block_cache, copy_tuning, tuning

logger = logging.getLogger("pyg_edge")

_prepared = None
_command = False  # the `pyg-edge` command's process: keep_heap by default


@dataclass(frozen=True)
class Prepared:
    """What prepare() set for this process.

    Attributes:
      gemm: The GEMM backend CTranslate2 runs ("ctranslate2 default" when pyg-edge could not
        choose it), and why.
      keep_heap: Whether glibc keeps freed memory (one arena, never trimmed), for the whole
        process.
      copies: How CTranslate2's large copies are made (copy_tuning.install_copy).
      blocks: How CTranslate2's large freed blocks are kept (block_cache: in an app's
        process, without keep_heap).
      too_late: ctranslate2 was imported before pyg-edge could choose its backend.
    """

    gemm: backend_choice.GemmChoice
    keep_heap: bool
    copies: str
    too_late: bool
    blocks: str = ""


def prepare(gemm: str | None = None, keep_heap: bool | None = None):
    """Makes pyg-edge's process-wide settings; call it once, early (before ctranslate2 is
    imported by anything). Later calls return the first call's result.

    Args:
      gemm: The CPU GEMM backend ("auto" or one of pyg_edge.cpu.gemm_backend.CHOICES);
        None reads PYG_EDGE_GEMM.
      keep_heap: Apply glibc's heap settings for the whole process: the host's own freed
        memory then stays resident too. None (the default): only in the `pyg-edge`
        command's process (as_command); an app's process gets CTranslate2's own block
        cache instead. PYG_EDGE_CPU_TUNING=0 turns both off.

    Returns:
      Prepared: what was set.
    """
    global _prepared
    if _prepared is None:
        too_late = "ctranslate2" in sys.modules and backend_choice.current_choice() is None
        if too_late:
            logger.warning(
                "ctranslate2 was imported before pyg_edge.cpu.prepare(): pyg-edge cannot "
                "choose its int8 GEMM backend, only check the one the host set up (on AVX2 "
                "CPUs without VNNI int8 then runs as float32 or int16); call "
                "pyg_edge.cpu.prepare() before importing anything that imports ctranslate2")
        backend_choice.load_ctranslate2(gemm)
        if keep_heap is None:
            keep_heap = _command
        applied = tuning.apply_cpu_tuning(
            tuning.choose_cpu_tuning() if keep_heap else tuning.CpuTuning())
        copies = copy_tuning.install_copy(os.environ)
        blocks = ("kept in glibc's heap (keep_heap)" if applied.keep_heap
                  else block_cache.install_block_cache(os.environ))
        _prepared = Prepared(backend_choice.current_choice(), applied.keep_heap, copies,
                             too_late, blocks)
    elif gemm not in (None, "auto", _prepared.gemm.backend):
        logger.warning("GEMM backend %s asked for, but this process already runs %s",
                       gemm, _prepared.gemm.backend)
    return _prepared


def as_command() -> None:
    """Marks this process as the `pyg-edge` command's (pyg_edge.launcher): prepare() keeps
    glibc's heap by default, as the command always did."""
    global _command
    _command = True


def prepared() -> Prepared | None:
    """prepare()'s result, or None before it ran."""
    return _prepared


def ctranslate2_module(gemm: str | None = None, keep_heap: bool | None = None):
    """ctranslate2, imported after prepare() (with these defaults when the host did not
    call it)."""
    prepare(gemm, keep_heap)
    return backend_choice.load_ctranslate2(gemm)
