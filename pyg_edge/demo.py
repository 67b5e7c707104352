"""The bundled demo: a small trained GPT-Neo and a default character, for a first chat.

Both ship inside the package (pyg_edge/demo_data), so a wheel, an editable install and a
clone find them the same way. The model is converted on first use into a per-user cache
folder (see cache_dir), never into the installed package, which may be read-only.
"""

import hashlib
import json
import logging
from pathlib import Path

from pyg_edge.errors import ModelLoadError
from pyg_edge.user_cache import CACHE_ENV, cache_dir

logger = logging.getLogger("pyg_edge")

DEMO_DATA = Path(__file__).resolve().parent / "demo_data"
DEMO_CHECKPOINT = DEMO_DATA / "pyg-demo-neo"
DEMO_CHARACTER = DEMO_DATA / "robin.json"


def converted_path() -> Path:
    """Where the demo model converts to: named by a digest of what it is made from.

    The digest covers the checkpoint files, the converter version and the conversion
    settings (with the prefill chunk resolved), so an upgrade that ships new weights, a new
    converter or a new default never reuses a stale conversion.
    """
    from pyg_edge_convert import __version__

    digest = hashlib.sha256(__version__.encode())
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        digest.update((DEMO_CHECKPOINT / name).read_bytes())
    digest.update(json.dumps(conversion_settings(), sort_keys=True).encode())
    return cache_dir() / f"pyg-demo-neo-int8-{digest.hexdigest()[:16]}"


def conversion_settings() -> dict:
    """The demo's convert_checkpoint arguments: int8, the converter's default prefill chunk."""
    from pyg_edge_convert.gpt_neo import default_prefill_chunk

    config = json.loads((DEMO_CHECKPOINT / "config.json").read_text(encoding="utf-8"))
    return {"quantization": "int8",
            "prefill_chunk": default_prefill_chunk(config["max_position_embeddings"])}


def demo_model(progress=None) -> Path:
    """The converted demo model folder, converting the bundled checkpoint on first use.

    Two processes may convert at once: each writes its own staging folder and renames it
    into place, and the one that finds the other's model there uses that one.

    Raises:
      ModelLoadError: the bundled checkpoint is missing, or the cache cannot be written.
    """
    if not (DEMO_CHECKPOINT / "model.safetensors").is_file():
        raise ModelLoadError(
            f"no MODEL given and the demo model is not at {DEMO_CHECKPOINT}: pass a model "
            "folder made by `pyg-edge convert`"
        )
    dest = converted_path()
    if (dest / "pyg_edge.json").exists():
        return dest
    from pyg_edge_convert import ConversionError, convert_checkpoint

    logger.info("converting the demo model to %s (first use)", dest)
    try:
        convert_checkpoint(str(DEMO_CHECKPOINT), str(dest), progress=progress,
                           **conversion_settings())
    except ConversionError as error:
        if (dest / "pyg_edge.json").exists():  # another process finished first
            return dest
        raise ModelLoadError(
            f"cannot convert the demo model into {dest.parent} ({error}); set {CACHE_ENV} "
            "to a writable folder"
        ) from None
    return dest
