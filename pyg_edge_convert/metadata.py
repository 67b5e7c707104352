"""pyg_edge.json: what the runtime needs to know about a converted model, beside its weights."""

import json
import os
from collections import Counter

from pyg_edge_convert.gpt_neo import GptNeoConfig, ct2_layers

METADATA_FILE = "pyg_edge.json"
FORMAT_VERSION = 1


def build_metadata(config: GptNeoConfig, source_config: dict, checkpoint, quantization: str,
                   version: str, exact: bool = True, prefill_chunk: int = 0) -> dict:
    """Collects the converted model's facts; the runtime reads them back, never guesses."""
    dtypes = Counter(ref.dtype for ref in checkpoint.tensors.values())
    return {
        "format_version": FORMAT_VERSION,
        "converter_version": version,
        "architecture": "gpt_neo",
        "quantization": quantization,
        "context_length": config.max_positions,
        "window_size": config.window_size,
        "attention_layers": list(config.attention_layers),
        "local_attention": (
            "exact (relative-position mask in an extra head dimension)" if exact
            else "inexact (CTranslate2 sliding window: a one-pass prompt sees too far back)"
        ),
        # CTranslate2's decoder-level sliding window: a prompt pass is read in chunks of
        # this many tokens (0: one pass); the runtime keeps every pass exact with it.
        "prefill_chunk": prefill_chunk,
        # The CTranslate2 layers; "zero" is an added first layer that adds nothing.
        "ct2_layers": list(ct2_layers(config, exact)),
        "vocab_size": config.vocab_size,
        "bos_token_id": config.bos_token_id,
        "eos_token_id": config.eos_token_id,
        "source": {
            "folder": os.path.basename(os.path.normpath(os.path.abspath(checkpoint.folder))),
            "name_or_path": source_config.get("_name_or_path", ""),
            "files": list(checkpoint.files),
            "dtype": dtypes.most_common(1)[0][0] if dtypes else "",
            "config": source_config,
        },
    }


def write_metadata(folder: str, metadata: dict) -> None:
    with open(os.path.join(folder, METADATA_FILE), "w", encoding="utf-8") as f:
        json.dump(metadata, f, indent=2, sort_keys=True)
        f.write("\n")
