"""The server's options, declared once: `pyg-edge serve`'s flags are checked against these
fields by tests/server/test_settings.py, and create_app takes them as they are."""

from dataclasses import dataclass, field

from pyg_edge.chat.smart_context import DEFAULT_FRACTION
from pyg_edge.generation.sampling import SamplingOptions


@dataclass(frozen=True)
class ServerSettings:
    """How `pyg-edge serve` serves a model.

    Attributes:
      host: Address to listen on; the loopback default lets only this machine connect.
      port: TCP port (KoboldCpp's usual one).
      api_key: When set, every API request needs it (Authorization: Bearer KEY).
      max_length: The most new tokens one request gets (more is lowered to this).
      replies: Replies the web chat page gets per turn; the extras make its Regenerate
        instant.
      cors_origins: Origins whose browser pages may call the API ("*": any); none by
        default (pyg_edge.server.cors).
      allowed_hosts: Host names besides the loopback ones that requests may name when the
        server listens on loopback (pyg_edge.server.browser_guard).
      prefix_cache: Reuse the prompt prefix of earlier requests (pyg_edge.chat.planning);
        False saves the memory of a cached prompt and reads every prompt in full.
      user_line_stop: End every completion at Pygmalion's user line ("\nYou:"), whatever
        the client asked: right for chats (the model writes the user's turn otherwise),
        wrong for a story written through KoboldAI Lite with no stop strings.
      smart_context: The share of the history a chat whose context is full keeps in front
        of the model (pyg_edge.chat.smart_context); 0 reads what the client sends.
      defaults: Sampling options for fields a request leaves out (not a flag).
    """

    host: str = "127.0.0.1"
    port: int = 5001
    api_key: str = ""
    max_length: int = 512
    replies: int = 1
    cors_origins: tuple = ()
    allowed_hosts: tuple = ()
    prefix_cache: bool = True
    user_line_stop: bool = True
    smart_context: float = DEFAULT_FRACTION
    defaults: SamplingOptions = field(default_factory=SamplingOptions)
