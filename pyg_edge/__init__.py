"""pyg-edge: run Pygmalion (gpt-neo) dialogue models with CTranslate2 on ordinary machines.

The library's public names are here; the folders are the pipeline (docs/architecture.md):
generation/ (one CTranslate2 call), chat/ (cards, prompts, sessions, completions),
cpu/ (process-wide settings), server/ (the HTTP layer, with the `server` extra).
"""

from pyg_edge.chat.characters import Character, load_character
from pyg_edge.chat.completion_stream import CompletionChunk, CompletionStream, Usage
from pyg_edge.chat.completions import Completions
from pyg_edge.chat.prompt import Message, Prompt, build_prompt
from pyg_edge.chat.session import ChatSession
from pyg_edge.demo import demo_character, demo_model
from pyg_edge.errors import (
    CharacterError,
    ChatFileError,
    ConversionError,
    GenerationError,
    InvalidRequestError,
    ModelLoadError,
    OptionsError,
    PromptTooLongError,
    PygEdgeError,
    ReentryError,
    UnknownOptionError,
)
from pyg_edge.generation.model import PygModel
from pyg_edge.generation.replies import Replies
from pyg_edge.generation.request import ModelInput
from pyg_edge.generation.sampling import SamplingOptions
from pyg_edge.generation.stats import GenerationStats, PromptNotice
from pyg_edge.generation.streams import TextStream
from pyg_edge_convert.version import __version__

__all__ = [
    "Character",
    "CharacterError",
    "ChatFileError",
    "ChatSession",
    "CompletionChunk",
    "CompletionStream",
    "Completions",
    "ConversionError",
    "GenerationError",
    "GenerationStats",
    "InvalidRequestError",
    "Message",
    "ModelInput",
    "ModelLoadError",
    "OptionsError",
    "Prompt",
    "PromptNotice",
    "PromptTooLongError",
    "PygEdgeError",
    "PygModel",
    "ReentryError",
    "Replies",
    "SamplingOptions",
    "TextStream",
    "UnknownOptionError",
    "Usage",
    "build_prompt",
    "demo_character",
    "demo_model",
    "load_character",
    "__version__",
]
