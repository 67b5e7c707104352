"""A converted model folder's metadata, and where and in what type it runs."""

import json
import os

from pyg_edge.errors import ModelLoadError

METADATA_FILE = "pyg_edge.json"
DEVICES = ("auto", "cpu", "cuda")


def read_metadata(path: str) -> dict:
    """Reads pyg_edge.json from a converted model folder.

    Raises:
      ModelLoadError: the folder or its metadata is missing or unreadable.
    """
    if not os.path.isdir(path):
        raise ModelLoadError(f"{path} is not a folder: pass a model made by `pyg-edge convert`")
    try:
        with open(os.path.join(path, METADATA_FILE), encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise ModelLoadError(
            f"{path} has no {METADATA_FILE}: convert the checkpoint first with "
            "`pyg-edge convert SRC DEST`"
        ) from None
    except (OSError, json.JSONDecodeError) as error:
        raise ModelLoadError(f"cannot read {METADATA_FILE} in {path}: {error}") from None


def pick_device(ctranslate2, device: str) -> str:
    if device == "auto":
        return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    if device == "cuda" and ctranslate2.get_cuda_device_count() == 0:
        raise ModelLoadError("device cuda asked for, but CTranslate2 sees no CUDA GPU")
    return device
