"""The server's options, declared once: `pyg-edge serve`'s flags are generated from these
fields (their help text is each field's `help`), and create_app takes them as they are.

The limits (max_stops and below) bound what one request may cost; docs/server.md's
Security section lists each and what a request past it gets.
"""

from dataclasses import dataclass, field

from pyg_edge.chat.smart_context import DEFAULT_FRACTION
from pyg_edge.generation.replies import MAX_REPLIES
from pyg_edge.generation.sampling import SamplingOptions


def option(default, help: str, **flag):
    """A ServerSettings field that is also a `pyg-edge serve` flag.

    Args:
      default: The field's default (and the flag's).
      help: The flag's help text.
      **flag: How the flag differs from the plain `--field-name VALUE`: `flag` (its
        name, or "--x/--no-x" for a switch), `low`/`high` (a range), `multiple`,
        `metavar`, `envvar`.
    """
    return field(default=default, metadata={"help": help, **flag})


@dataclass(frozen=True)
class ServerSettings:
    """How `pyg-edge serve` serves a model. Each field's help (its metadata) is the flag's.

    Attributes:
      host: Address to listen on; the loopback default lets only this machine connect.
      port: TCP port (KoboldCpp's usual one).
      api_key: When set, every API request needs it (Authorization: Bearer KEY).
      max_length: The most new tokens one request gets (more is lowered to this).
      replies: Replies the web chat page gets per turn.
      cors_origins: Origins whose browser pages may call the API ("*": any).
      allowed_hosts: Host names besides the loopback ones that requests may name
        (pyg_edge.server.browser_guard).
      prefix_cache: Reuse the prompt prefix of earlier requests (pyg_edge.chat.planning).
      user_line_stop: End every completion at Pygmalion's user line ("\nYou:").
      smart_context: The share of a full chat's history kept in front of the model.
      max_stops: Stop strings one request may send (400 past it).
      max_bans: Banned strings plus banned token ids one request may send (400 past it).
      max_phrase_chars: The longest stop or banned string, in characters (400 past it).
      max_body_bytes: The largest request body (413 past it).
      body_timeout: Seconds a client has to send its whole body (408 past it).
      write_timeout: Seconds a reply may wait for its client to read (then it is dropped).
      idle_timeout: Seconds a connection may sit with no request, or half its headers.
      max_waiting: Generations that may wait for the model (503 past it).
      max_tokenize_tokens: Tokens one tokenize call may return (400 past it).
      defaults: Sampling options for fields a request leaves out (not a flag).
    """

    host: str = option("127.0.0.1", "Address to listen on; only this machine can connect "
                       "by default.")
    port: int = option(5001, "KoboldCpp's usual port.")
    api_key: str = option("", "Require this key (Authorization: Bearer KEY). Env: "
                          "PYG_EDGE_API_KEY.", envvar="PYG_EDGE_API_KEY", show_default=False)
    max_length: int = option(512, "The most new tokens one request gets (more is lowered "
                             "to this).")
    replies: int = option(1, "Replies the web chat page gets per turn; the extras make its "
                          "Regenerate instant.", low=1, high=MAX_REPLIES)
    cors_origins: tuple = option(
        (), "Let browser pages from ORIGIN call the API (repeatable; '*' for any), e.g. "
        "https://lite.koboldai.net for KoboldAI Lite's website. Off by default.",
        flag="--cors-origin", multiple=True, metavar="ORIGIN")
    allowed_hosts: tuple = option(
        (), "Also answer requests that name this host (repeatable); by default only "
        "127.0.0.1, localhost and [::1] are answered on loopback, and any name on a "
        "wildcard bind (a web page cannot rebind its own name to a name you list).",
        flag="--allow-host", multiple=True, metavar="NAME")
    prefix_cache: bool = option(
        True, "Reuse the prompt prefix of earlier API requests (a chat's history); "
        "--no-prefix-cache saves the memory of a cached prompt (about 1.1 GB at 1,700 tokens "
        "for Pygmalion 2.7B) and reads every prompt in full.",
        flag="--prefix-cache/--no-prefix-cache")
    user_line_stop: bool = option(
        True, "End every reply at a line starting with 'You:' (Pygmalion's user), whatever "
        "the client asked; turn off for stories with such lines.",
        flag="--user-line-stop/--no-user-line-stop")
    smart_context: float = option(
        DEFAULT_FRACTION, "Once a chat fills the frontend's context, keep its card and this "
        "share of its newest history, so the next turns read only what is new; 0 turns it "
        "off (every turn re-reads the whole prompt).", low=0.0, high=1.0, max_open=True,
        metavar="FRACTION")
    max_stops: int = option(32, "Stop strings one request may send (more: 400); a group "
                            "chat sends one per member.", low=1)
    max_bans: int = option(1024, "Banned strings plus banned token ids one request may "
                           "send (more: 400).", low=0)
    max_phrase_chars: int = option(256, "The longest stop or banned string, in characters "
                                   "(longer: 400).", low=1)
    max_body_bytes: int = option(2 * 1024 * 1024, "The largest request body: a long chat "
                                 "plus a PNG card (larger: 413).", low=1024)
    body_timeout: float = option(20.0, "Seconds a client has to send its whole body "
                                 "(slower: 408, and the connection is closed).", low=0.1)
    write_timeout: float = option(15.0, "Seconds a reply may wait for its client to read "
                                  "it; then it is cancelled and the connection closed.",
                                  low=0.1)
    idle_timeout: float = option(15.0, "Seconds a connection may stay open with no request "
                                 "under way, or with its headers half sent.", low=0.1)
    max_waiting: int = option(16, "Generations that may wait for the model at once, besides "
                              "the one it runs (more: 503 with Retry-After).", low=1)
    max_tokenize_tokens: int = option(32768, "Tokens one tokenize or token-count call may "
                                      "count (more: 400).", low=1)
    defaults: SamplingOptions = field(default_factory=SamplingOptions)
