"""One generation call prepared: options, the prompt's token ids cut at the static prefix,
stop rules and CTranslate2's arguments. Pure functions of the tokenizer and the model's
metadata, so they are tested without a model.

What the model reads comes in neutral terms (ModelInput: text, the part to cache, stops,
trimming); a chat layer's prompt format (pyg_edge.chat) is its caller's business.
"""

from dataclasses import dataclass

from pyg_edge.errors import OptionsError, PromptTooLongError
from pyg_edge.generation.prefill import exact_cut
from pyg_edge.generation.sampling import SamplingOptions
from pyg_edge.generation.stopping import StopMatcher


@dataclass(frozen=True)
class ModelInput:
    """A prompt with the caller's rules for it (a str prompt is the same with none).

    Attributes:
      text: What the model reads.
      stop_strings: Strings that end the reply (besides the options' stop).
      static_prefix: Leading characters of text that stay the same from call to call:
        given to CTranslate2 as its static prompt, whose state it caches.
      trim: Trim the reply of surrounding whitespace (as a chat shows it).
      banned: Strings the model may not write (besides the options' banned): the prompt
        format's own markers.
    """

    text: str
    stop_strings: tuple = ()
    static_prefix: str = ""
    trim: bool = False
    banned: tuple = ()


@dataclass(frozen=True)
class Request:
    """One generation call, prepared.

    Attributes:
      options: Sampling options with the call's overrides.
      ids: The whole prompt's token ids.
      static_ids: Its leading ids given to CTranslate2 as the static (cached) prefix.
      dynamic_ids: The rest, read on every call.
      stops: Stop strings: the options' and the input's own.
      trim: Trim the reply (a ModelInput that asks); raw completions keep spaces.
      eos: The end token's id.
      cache_prefix: False for a prefix only the prefill chunk asked for: caching it would
        push out ones that later prompts share (pyg_edge.generation.prefill.exact_cut).
    """

    options: SamplingOptions
    ids: list
    static_ids: list
    dynamic_ids: list
    stops: tuple
    trim: bool
    eos: int
    cache_prefix: bool = True


def prepare_request(tokenizer, metadata: dict, prompt, options: SamplingOptions | None,
                    overrides: dict, static_tokens: int = 0, cached=frozenset()) -> Request:
    """The Request of one call, checked to fit the model's context.

    Args:
      tokenizer: The model's TextTokenizer.
      metadata: The model folder's metadata (context_length, eos_token_id, prefill_chunk).
      prompt: A str (a raw completion) or a ModelInput (its static prefix and stops).
      options: Sampling options (None: the defaults), then overrides on top.
      overrides: SamplingOptions fields to change for this call.
      static_tokens: For a str prompt, leading tokens to cache as the static prefix.
      cached: The prefixes (tuples of ids) CTranslate2 holds now.

    Raises:
      PromptTooLongError: the prompt and max_new_tokens do not fit in the context.
      OptionsError: static_tokens is negative, or given with a ModelInput.
    """
    options = (options or SamplingOptions()).with_overrides(**overrides)
    ruled = isinstance(prompt, ModelInput)
    check_static_tokens(static_tokens, ruled)
    if ruled and prompt.banned:
        options = options.with_overrides(
            banned=tuple(dict.fromkeys(options.banned + prompt.banned)))
    text = prompt.text if ruled else prompt
    ids = tokenizer.encode(text)
    check_fits(len(ids), options.max_new_tokens, metadata["context_length"])
    if ruled and prompt.static_prefix:
        cut = static_cut(tokenizer, ids, text, prompt.static_prefix)
    else:  # CTranslate2 needs at least one token after the prefix
        cut = max(0, min(static_tokens, len(ids) - 1))
    exact = exact_cut(len(ids), cut, metadata.get("prefill_chunk", 0))
    static_ids, dynamic_ids = ids[:exact], ids[exact:]
    stops = options.stop + (prompt.stop_strings if ruled else ())
    return Request(options, ids, static_ids, dynamic_ids, stops,
                   trim=ruled and prompt.trim,
                   eos=metadata["eos_token_id"],
                   cache_prefix=exact == cut or tuple(static_ids) in cached)


def check_fits(prompt_tokens: int, max_new_tokens: int, context_length: int) -> None:
    if prompt_tokens + max_new_tokens > context_length:
        raise PromptTooLongError(
            f"prompt is {prompt_tokens} tokens and max_new_tokens {max_new_tokens}, "
            f"the context is {context_length}: shorten the prompt or lower max_new_tokens"
        )


def check_static_tokens(static_tokens, ruled: bool) -> None:
    if isinstance(static_tokens, bool) or not isinstance(static_tokens, int) or static_tokens < 0:
        raise OptionsError(f"static_tokens is {static_tokens!r}, expected an int >= 0")
    if ruled and static_tokens:
        raise OptionsError("static_tokens applies to str prompts; a ModelInput has its "
                           "static_prefix")


def static_cut(tokenizer, ids: list, text: str, static: str) -> int:
    """Where the static prefix ends in ids, at a token boundary of the whole text."""
    if not static or not text.startswith(static):
        return 0
    # CTranslate2 needs at least one token after the prefix
    return min(tokenizer.prefix_length(ids, static), len(ids) - 1)


def banned_sequences(tokenizer, request: Request) -> list:
    """Token sequences to suppress: the banned strings that no stop string ends first.

    A banned string that contains a stop string can never reach the reply (the stop ends
    it there), and suppressing it would keep the stop from firing: with "<START>" both
    banned and a stop, a model ending its turn with "\\n<START>" was pushed to write
    "\\n<START." and go on.

    Each banned string is read once against all the stops together (not stop by stop), so
    the work grows with the text of the bans and stops, not with their product.
    """
    stops = StopMatcher(request.stops)
    banned = [b for b in dict.fromkeys(request.options.banned) if not stops.occurs_in(b)]
    variants = {tuple(tokenizer.encode(p + s)) for s in banned for p in ("", " ")}
    variants |= {(i,) for i in request.options.banned_ids}
    return [tokenizer.tokens(list(v)) for v in variants if v]


def generation_kwargs(tokenizer, request: Request) -> dict:
    """generate_tokens/generate_batch arguments besides the dynamic prompt tokens."""
    banned = banned_sequences(tokenizer, request)
    return dict(
        static_prompt=tokenizer.tokens(request.static_ids) or None,
        cache_static_prompt=request.cache_prefix,
        suppress_sequences=banned or None,
        end_token=tokenizer.tokens([request.eos]),
        **request.options.ctranslate2_kwargs(),
    )
