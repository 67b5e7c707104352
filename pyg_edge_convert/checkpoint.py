"""Finds a gpt-neo checkpoint's files in a local folder and lists the tensors they hold."""

import json
import os
import re
from dataclasses import dataclass

from pyg_edge_convert.errors import ConversionError
from pyg_edge_convert.safetensors_file import read_safetensors
from pyg_edge_convert.torch_zip_file import read_torch_zip

# Safetensors first: it cannot carry code and reads faster.
_LAYOUTS = (
    ("model.safetensors", None, read_safetensors),
    ("model.safetensors.index.json", "index", read_safetensors),
    ("pytorch_model.bin", None, read_torch_zip),
    ("pytorch_model.bin.index.json", "index", read_torch_zip),
)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint folder's config and tensors.

    Attributes:
      folder: The folder.
      config: config.json, parsed.
      tensors: State-dict key to TensorRef, over all shards.
      files: The weight files read, relative to the folder.
    """

    folder: str
    config: dict
    tensors: dict
    files: tuple


def open_checkpoint(src: str) -> Checkpoint:
    """Opens a local Hugging Face checkpoint folder.

    Raises:
      ConversionError: src is no folder (a hub id, say), or its config or weights are unusable.
    """
    _require_local_folder(src)
    config = read_config(src)
    for filename, kind, reader in _LAYOUTS:
        path = os.path.join(src, filename)
        if os.path.isfile(path):
            files = _index_shards(src, filename) if kind == "index" else [filename]
            tensors = {}
            for shard in files:
                tensors.update(reader(os.path.join(src, shard)))
            return Checkpoint(src, config, tensors, tuple(files))
    raise ConversionError(
        f"{src} holds no weights: expected one of " + ", ".join(f for f, _, _ in _LAYOUTS)
    )


def _require_local_folder(src: str) -> None:
    if os.path.isdir(src):
        return
    if not os.path.exists(src) and _HUB_ID.match(src):
        raise ConversionError(
            f"{src} is not a local folder; it looks like a Hugging Face hub id, and pyg-edge "
            "never downloads (there is no network here). Download the repository on a machine "
            f"with network access (e.g. `huggingface-cli download {src} --local-dir DIR`), "
            "then pass that local folder."
        )
    raise ConversionError(f"{src} is not a folder: pass the local folder of a gpt-neo checkpoint")


def read_config(src: str) -> dict:
    """Reads config.json from a checkpoint folder."""
    path = os.path.join(src, "config.json")
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except FileNotFoundError:
        raise ConversionError(f"{src} has no config.json") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConversionError(f"config.json is not valid JSON: {error}") from None
    if not isinstance(config, dict):
        raise ConversionError("config.json is not a JSON object")
    return config


def _index_shards(src: str, index_name: str) -> list:
    try:
        with open(os.path.join(src, index_name), encoding="utf-8") as f:
            weight_map = json.load(f)["weight_map"]
        shards = sorted(set(weight_map.values()))
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError):
        raise ConversionError(f"{index_name} is malformed: it needs a weight_map") from None
    for shard in shards:
        if not isinstance(shard, str) or os.path.basename(shard) != shard:
            raise ConversionError(f"{index_name} names a shard outside the folder: {shard!r}")
        if not os.path.isfile(os.path.join(src, shard)):
            raise ConversionError(f"{index_name} lists {shard}, which is missing")
    return shards
