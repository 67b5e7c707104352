"""KoboldAI's /api/v1/generate body (and KoboldCpp's extras) mapped onto pyg-edge options.

Frontends send many fields that do not apply here (typical, tfs, top_a, min_p, sampler
order, ...); they are ignored. rep_pen_range is ignored too: CTranslate2 penalises every
earlier token.
"""

from dataclasses import dataclass

from pyg_edge.sampling import SamplingOptions
from pyg_edge.server.params import field, string_list

API_VERSION = "1.2.5"  # >= 1.2.2 makes frontends send stop_sequence
# SillyTavern turns on streaming and token counting for KoboldCpp backends.
KOBOLDCPP_VERSION = "1.60.1"


@dataclass(frozen=True)
class KoboldRequest:
    """A parsed generate request.

    Attributes:
      prompt: The text to continue.
      options: Sampling options.
      max_context: Tokens of context the client allows (prompt plus reply).
      key: KoboldCpp's genkey, for /api/extra/abort.
    """

    prompt: str
    options: SamplingOptions
    max_context: int
    key: str


def parse_generate(body: dict, defaults: SamplingOptions, max_length: int,
                   context_length: int) -> KoboldRequest:
    """Reads a KoboldAI generate body.

    Raises:
      BadRequest: a field has the wrong type or is out of bounds.
    """
    top_p = field(body, "top_p", float, defaults.top_p, 0.0, 1.0)
    seed = field(body, "sampler_seed", int, -1)
    options = defaults.with_overrides(
        max_new_tokens=field(body, "max_length", int, defaults.max_new_tokens, 1, max_length),
        temperature=field(body, "temperature", float, defaults.temperature, 0.0, 10.0),
        top_k=field(body, "top_k", int, defaults.top_k, 0, 100_000),
        top_p=top_p or 1.0,  # KoboldAI clients send 0 for "off"
        repetition_penalty=field(body, "rep_pen", float, defaults.repetition_penalty, 0.01, 10.0),
        stop=string_list(body, "stop_sequence"),
        seed=seed if seed >= 0 else None,  # -1: random, as in KoboldAI
    )
    return KoboldRequest(
        prompt=field(body, "prompt", str, required=True),
        options=options,
        max_context=field(body, "max_context_length", int, context_length, 1, 1 << 20),
        key=field(body, "genkey", str, ""),
    )
