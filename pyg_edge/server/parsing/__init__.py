"""Request parsing, one layer below the per-API route modules: every route reads its body
through these, and no API module imports another.

- fields.py: typed fields, ranges, and the BadRequest (400) a bad one gets.
- sampling.py: client numbers turned into SamplingOptions, clamped; the server's Limits.
- client_settings.py: EOS, minimum length, bans and logit_bias, unsupported samplers.
- bodies.py: each API's completion body read into one Completion; token lists; logprobs.
"""

from pyg_edge.server.parsing.bodies import (
    completion_prompt,
    include_usage,
    parse_completion,
    parse_generate,
    requested_top,
    token_list,
)
from pyg_edge.server.parsing.client_settings import apply_client_settings, ignored_settings
from pyg_edge.server.parsing.fields import BadRequest, Notes, field, first_field, string_list
from pyg_edge.server.parsing.sampling import (
    Completion,
    Limits,
    fit_context,
    sampling_options,
    single_reply,
)

__all__ = ["BadRequest", "Completion", "Limits", "Notes", "apply_client_settings",
           "completion_prompt", "field", "first_field", "fit_context", "ignored_settings",
           "include_usage", "parse_completion", "parse_generate", "requested_top",
           "sampling_options", "single_reply", "string_list", "token_list"]
