"""Every exception pyg-edge raises for things a user or an app can cause.

All derive from PygEdgeError, and each message is one line a user can act on (the CLI
prints it as it is). Those that replace a built-in exception also derive from it, so code
that caught ValueError or TypeError before still does.

PygEdgeError and ConversionError are defined in pyg_edge_convert.errors, which imports nothing
of the runtime, so the converter raises the same classes without importing pyg_edge.
"""

# "X as X" re-exports ConversionError: an app imports it from here.
from pyg_edge_convert.errors import ConversionError as ConversionError
from pyg_edge_convert.errors import PygEdgeError


class ModelLoadError(PygEdgeError):
    """A model folder is missing, incomplete, closed or cannot run on the asked device."""


class CharacterError(PygEdgeError):
    """A character card cannot be read."""


class ChatFileError(PygEdgeError):
    """A saved chat cannot be read or written."""


class PromptTooLongError(PygEdgeError):
    """A prompt cannot fit in the model's context with the tokens asked for."""


class OptionsError(PygEdgeError, ValueError):
    """A sampling option, a number of replies or another argument has a value that cannot be
    used."""


class UnknownOptionError(OptionsError, TypeError):
    """An option name that does not exist (the message lists the valid ones)."""


class InvalidRequestError(PygEdgeError, ValueError):
    """A completion request (messages, fields) is malformed; the message names the field."""


class GenerationError(PygEdgeError, RuntimeError):
    """CTranslate2 failed while generating (out of memory, a device error)."""


class ReentryError(PygEdgeError, RuntimeError):
    """A thread started a generation while it still reads another one of the same model,
    which would wait for itself (see docs/embedding.md, the thread contract)."""
