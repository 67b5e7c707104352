"""One checkpoint folder in, one CTranslate2 model folder out, written atomically."""

import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

from pyg_edge_convert import gpt_neo
from pyg_edge_convert.checkpoint import open_checkpoint
from pyg_edge_convert.errors import ConversionError
from pyg_edge_convert.metadata import build_metadata, write_metadata
from pyg_edge_convert.model_files import QUANTIZATIONS, ct2_config, write_model_bin
from pyg_edge_convert.tokenizer_files import load_tokenizer, vocabulary
from pyg_edge_convert.version import __version__

logger = logging.getLogger("pyg_edge")

# In a staging folder while it is written: the converting process's id, so a later
# conversion can tell a killed one's leftovers from a running one's.
OWNER_FILE = ".pyg-edge-convert.pid"


@dataclass(frozen=True)
class ConversionSummary:
    """What a conversion produced.

    Attributes:
      dest: The model folder.
      quantization: The weights' type.
      size_bytes: Total size of the folder's files.
      seconds: Wall time of the conversion.
    """

    dest: str
    quantization: str
    size_bytes: int
    seconds: float


def convert_checkpoint(
    src: str,
    dest: str,
    quantization: str = "int8",
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
    exact_local_attention: bool = True,
    prefill_chunk: int | None = None,
) -> ConversionSummary:
    """Converts a local gpt-neo checkpoint folder into a CTranslate2 model folder.

    The model is written into a temporary folder beside dest and renamed into place, so an
    interrupted or failed conversion leaves dest as it was.

    Args:
      src: Folder with config.json, weights and tokenizer files.
      dest: Folder to create.
      quantization: One of QUANTIZATIONS.
      force: Replace dest if it exists.
      progress: Called as progress(done, total) after each conversion step.
      exact_local_attention: False writes CTranslate2's plain sliding window instead,
        which is not exact for prompts longer than the window: for measurements only.
      prefill_chunk: Tokens per chunk of a long prompt pass (CTranslate2's decoder-level
        sliding window, gpt_neo.check_prefill_chunk); None (the default) is half the
        model's context, which reads every prompt that fits exactly; 0 reads a prompt in
        one pass. A chunked model's forward_batch refuses inputs longer than the chunk:
        score with scoring_generator (benchmarks/scoring.py in the repository).

    Raises:
      ConversionError: bad input, or dest cannot be written.
    """
    started = time.monotonic()
    if quantization not in QUANTIZATIONS:
        raise ConversionError(
            f"unknown quantization {quantization!r}; expected one of: " + ", ".join(QUANTIZATIONS)
        )
    checkpoint = _guarded(lambda: open_checkpoint(src), "reading")
    config = gpt_neo.parse_config(checkpoint.config)
    prefill_chunk = gpt_neo.check_prefill_chunk(prefill_chunk, exact_local_attention,
                                                config.max_positions)
    _check_dest(src, dest, force)
    tokenizer = load_tokenizer(src, (config.bos_token_id, config.eos_token_id))
    tokens = vocabulary(tokenizer, config.vocab_size)

    def write(folder: str) -> None:
        write_model_bin(os.path.join(folder, "model.bin"), config,
                        gpt_neo.tensor_getter(checkpoint.tensors), quantization,
                        exact_local_attention, prefill_chunk, progress)
        _write_ct2_config(folder, config, tokens)
        tokenizer.save(os.path.join(folder, "tokenizer.json"))
        metadata = build_metadata(config, checkpoint.config, checkpoint, quantization,
                                  _converter_version(), exact_local_attention, prefill_chunk)
        write_metadata(folder, metadata)

    _write_atomically(dest, force, write)
    size = sum(e.stat().st_size for e in os.scandir(dest) if e.is_file())
    summary = ConversionSummary(dest, quantization, size, time.monotonic() - started)
    logger.info("converted %s to %s (%s, %d bytes)", src, dest, quantization, size)
    return summary


def _converter_version() -> str:
    return __version__


def _guarded(action: Callable, doing: str):
    try:
        return action()
    except OSError as error:
        raise ConversionError(f"{doing} {error.filename or ''} failed: {error.strerror}") from None


def _check_dest(src: str, dest: str, force: bool) -> None:
    src_real, dest_real = os.path.realpath(src), os.path.realpath(dest)
    if dest_real == src_real or src_real.startswith(dest_real + os.sep):
        raise ConversionError(f"{dest} would replace the checkpoint itself: choose another folder")
    if os.path.lexists(dest):
        if not os.path.isdir(dest):
            raise ConversionError(f"{dest} exists and is not a folder")
        if not force:
            raise ConversionError(f"{dest} already exists: pass --force to replace it")


def _write_atomically(dest: str, force: bool, write: Callable[[str], None]) -> None:
    parent = os.path.dirname(os.path.abspath(dest))
    name = os.path.basename(os.path.abspath(dest))
    try:
        os.makedirs(parent, exist_ok=True)
        remove_stale_staging(parent, name)
        staging = tempfile.mkdtemp(prefix=f".{name}.", suffix=".partial", dir=parent)
        with open(os.path.join(staging, OWNER_FILE), "w", encoding="utf-8") as owner:
            owner.write(str(os.getpid()))
    except OSError as error:
        raise ConversionError(f"cannot write to {parent}: {error.strerror}") from None
    try:
        _guarded(lambda: write(staging), "writing")
        os.remove(os.path.join(staging, OWNER_FILE))
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp's 0700 would hide it from others
        _guarded(lambda: _move_into_place(staging, dest, force), "replacing")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def remove_stale_staging(parent: str, name: str) -> list:
    """Removes the staging folders of conversions to name that were killed (their process
    is gone); a live conversion's is left alone. Returns the folders removed."""
    removed = []
    for entry in os.listdir(parent):
        if not (entry.startswith(f".{name}.") and entry.endswith((".partial", ".old"))):
            continue
        folder = os.path.join(parent, entry)
        if _owner_alive(os.path.join(folder, OWNER_FILE)):
            continue
        logger.warning("removing %s, left by a conversion that did not finish", folder)
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _owner_alive(owner_file: str) -> bool:
    try:
        with open(owner_file, encoding="utf-8") as owner:
            pid = int(owner.read().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):  # no file, not a pid, or no such process
        return False
    return True


def _umask() -> int:
    """This process's umask, read without changing it where the system says it."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    current = os.umask(0o022)  # elsewhere: read by setting it, and set it back at once
    os.umask(current)
    return current


def _move_into_place(staging: str, dest: str, force: bool) -> None:
    if not (force and os.path.isdir(dest)):
        os.rename(staging, dest)
        return
    # Keep the old model until the new one is in place, so a failure loses neither.
    retired = tempfile.mkdtemp(prefix=f".{os.path.basename(dest)}.", suffix=".old",
                               dir=os.path.dirname(os.path.abspath(dest)))
    with open(os.path.join(retired, OWNER_FILE), "w", encoding="utf-8") as owner:
        owner.write(str(os.getpid()))
    os.rename(dest, os.path.join(retired, "model"))
    try:
        os.rename(staging, dest)
    except OSError:
        os.rename(os.path.join(retired, "model"), dest)
        raise
    finally:
        shutil.rmtree(retired, ignore_errors=True)


def _write_ct2_config(folder: str, config: gpt_neo.GptNeoConfig, tokens: list) -> None:
    """config.json and vocabulary.json, which ctranslate2.Generator reads beside model.bin."""
    with open(os.path.join(folder, "config.json"), "w", encoding="utf-8") as f:
        json.dump(ct2_config(config, tokens), f, indent=2, sort_keys=True)
    with open(os.path.join(folder, "vocabulary.json"), "w", encoding="utf-8") as f:
        json.dump(tokens, f, ensure_ascii=False)
