"""Each API's completion body read into one Completion: OpenAI's (also
text-generation-webui's and llama.cpp's, which send the same fields under their own names)
and KoboldAI's; the token lists of the tokenizer routes; how many alternatives per token a
body asks for.
"""

from pyg_edge.generation.replies import MAX_REPLIES
from pyg_edge.generation.sampling import SamplingOptions
from pyg_edge.generation.token_probs import MAX_TOP_LOGPROBS
from pyg_edge.server.parsing.client_settings import apply_client_settings
from pyg_edge.server.parsing.fields import BadRequest, Notes, field, first_field, string_list
from pyg_edge.server.parsing.sampling import Completion, Limits, fit_context, sampling_options

_MAX_TOKENS = ("max_tokens", "max_completion_tokens", "max_new_tokens", "n_predict")
_CONTEXT = ("truncation_length", "max_context_length", "num_ctx")
# OpenAI fields a Pygmalion model cannot honour; asked for, they are named in `warnings`.
_NOT_HONOURED = ("tools", "tool_choice", "functions", "function_call", "response_format")
# text-generation-webui's legacy API posts its own body to the same /api/v1/generate
# (SillyTavern's "Legacy API" box): its names for the length, context and stops too.
_KOBOLD_MAX_LENGTH = ("max_length", "max_new_tokens", "max_tokens")
_KOBOLD_CONTEXT = ("max_context_length", "truncation_length")


def parse_completion(body: dict, defaults: SamplingOptions, limits: Limits,
                     default_tokens: int, prompt: str | None = None) -> Completion:
    """Reads an OpenAI (or text-generation-webui) body; numbers out of range are clamped.

    Args:
      body: The request body.
      defaults: Sampling options for fields it leaves out.
      limits: What the model and server allow.
      default_tokens: max_tokens when the body has none.
      prompt: The prompt (None: the body's `prompt`).

    Raises:
      BadRequest: a field has the wrong type, or n is not 1 to MAX_REPLIES.
    """
    notes = Notes()
    context = fit_context(first_field(body, _CONTEXT, int), limits, notes, "truncation_length")
    greedy = field(body, "do_sample", bool, True) is False  # text-generation-webui's switch
    tokens = first_field(body, _MAX_TOKENS, int)
    options = sampling_options(
        defaults, limits, context, notes,
        max_new_tokens=default_tokens if tokens is None or tokens < 0 else tokens,
        temperature=0.0 if greedy else field(body, "temperature", float),
        top_k=field(body, "top_k", int),
        top_p=field(body, "top_p", float),
        repetition_penalty=first_field(
            body, ("repetition_penalty", "rep_pen", "repeat_penalty"), float),
        no_repeat_ngram_size=field(body, "no_repeat_ngram_size", int),
        seed=first_field(body, ("seed", "sampler_seed"), int),
        stop=string_list(body, "stop") + string_list(body, "stopping_strings"),
    )
    options = apply_client_settings(body, options, limits, notes)
    n = field(body, "n", int, 1, 1, MAX_REPLIES)  # each choice holds its own prompt state
    options = options.with_overrides(top_logprobs=requested_top(body, notes, n))
    for name in _NOT_HONOURED:
        if body.get(name) not in (None, [], {}, "none", "auto", {"type": "text"}):
            notes.add(f"field '{name}' is not supported here (a Pygmalion model has no tools "
                      "or output formats): ignored")
    prompt = completion_prompt(body) if prompt is None else prompt
    return Completion(prompt, options, context, n=n, notes=notes)


def include_usage(body: dict) -> bool:
    """The client asked for a last streamed chunk with the usage (stream_options)."""
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def completion_prompt(body: dict) -> str:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        return prompt[0]
    if not isinstance(prompt, str):
        raise BadRequest("field 'prompt' must be a string (or a list of one string)")
    return prompt


def parse_generate(body: dict, defaults: SamplingOptions, limits: Limits) -> Completion:
    """Reads a KoboldAI generate body; numbers out of range are clamped and noted.

    Raises:
      BadRequest: a field has the wrong type, or the prompt is missing.
    """
    notes = Notes()
    context = fit_context(first_field(body, _KOBOLD_CONTEXT, int), limits, notes,
                          "max_context_length")
    options = sampling_options(
        defaults, limits, context, notes,
        max_new_tokens=first_field(body, _KOBOLD_MAX_LENGTH, int),
        temperature=field(body, "temperature", float),
        top_k=field(body, "top_k", int),
        top_p=field(body, "top_p", float),
        repetition_penalty=first_field(body, ("rep_pen", "repetition_penalty"), float),
        seed=first_field(body, ("sampler_seed", "seed"), int),  # -1 or absent: random
        stop=string_list(body, "stop_sequence") + string_list(body, "stopping_strings"),
    )
    options = apply_client_settings(body, options, limits, notes)
    return Completion(
        prompt=field(body, "prompt", str, required=True),
        options=options,
        context=context,
        key=field(body, "genkey", str, ""),
        n=field(body, "n", int, 1),
        memory=field(body, "memory", str, ""),  # KoboldCpp: kept in front of the prompt
        notes=notes,
    )


def token_list(body: dict, vocab_size: int) -> list:
    """A body's `tokens`: a list of token ids of the vocabulary.

    Raises:
      BadRequest: tokens is missing or holds something other than valid ids.
    """
    tokens = field(body, "tokens", list, required=True)
    if not all(isinstance(t, int) and not isinstance(t, bool) and 0 <= t < vocab_size
               for t in tokens):
        raise BadRequest(f"field 'tokens' must be a list of token ids from 0 to "
                         f"{vocab_size - 1}")
    return tokens


def requested_top(body: dict, notes: Notes, replies: int) -> int | None:
    """How many alternatives per token the body asks for; None when it asks for none.

    `logprobs` is a bool (OpenAI chat, with `top_logprobs`) or a count (OpenAI text);
    `n_probs` is llama.cpp's count.

    Raises:
      BadRequest: logprobs is neither a bool nor a number.
    """
    asked = body.get("logprobs")
    if isinstance(asked, bool):
        top = field(body, "top_logprobs", int, 0) if asked else None
    elif asked is None:
        top = None
    else:
        top = field(body, "logprobs", int)
    n_probs = field(body, "n_probs", int, 0)
    if n_probs > 0:
        top = max(top or 0, n_probs)
    if top is None or top < 0:
        return None
    if replies > 1:
        notes.add("token probabilities are given for n = 1 only: none sent")
        return None
    if top > MAX_TOP_LOGPROBS:
        notes.add(f"{top} alternatives per token asked for, {MAX_TOP_LOGPROBS} sent")
    return min(top, MAX_TOP_LOGPROBS)
