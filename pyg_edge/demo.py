"""The bundled demo: a small trained GPT-Neo and a default character, for a first chat.

They live in the repository's models/ folder (not in the installed package), so they are
found from a clone or an editable install. The model is converted on first use.
"""

import logging
from pathlib import Path

from pyg_edge.errors import ModelLoadError

logger = logging.getLogger("pyg_edge")

MODELS = Path(__file__).resolve().parent.parent / "models"
DEMO_CHECKPOINT = MODELS / "demo" / "pyg-demo-neo"
DEMO_CHARACTER = MODELS / "demo" / "characters" / "robin.json"
DEMO_CONVERTED = MODELS / "converted" / "pyg-demo-neo-int8"


def demo_model(progress=None) -> Path:
    """The converted demo model folder, converting the bundled checkpoint on first use.

    Raises:
      ModelLoadError: the demo checkpoint is not there (pyg-edge installed without its repo).
    """
    if (DEMO_CONVERTED / "pyg_edge.json").exists():
        return DEMO_CONVERTED
    if not (DEMO_CHECKPOINT / "config.json").exists():
        raise ModelLoadError(
            f"no MODEL given and the demo model is not at {DEMO_CHECKPOINT}: pass a model "
            "folder made by `pyg-edge convert`"
        )
    from pyg_edge_convert import convert_checkpoint

    logger.info("converting the demo model to %s (first use)", DEMO_CONVERTED)
    convert_checkpoint(str(DEMO_CHECKPOINT), str(DEMO_CONVERTED), "int8", progress=progress)
    return DEMO_CONVERTED
