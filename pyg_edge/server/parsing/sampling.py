"""Client numbers turned into SamplingOptions the model can run, clamped rather than refused.

Every API reads its own field names, then hands the raw numbers here, so each frontend's
slider values mean the same thing on every route: a negative seed is random, top_k <= 0
and top_p 0 are off, and a context or reply longer than the model allows is shortened.
"""

from dataclasses import dataclass, field

from pyg_edge.chat.characters import USER
from pyg_edge.generation.sampling import SamplingOptions
from pyg_edge.server.parsing.fields import BadRequest, Notes

MIN_PROMPT_ROOM = 16  # as KoboldCpp: a reply may not take the whole context
_SEED_RANGE = 2**32 - 1  # CTranslate2's seeds are 32-bit; 2**32 - 1 means "unseeded"


@dataclass(frozen=True)
class Limits:
    """What the server and model allow.

    Attributes:
      context_length: The model's context in tokens.
      max_new_tokens: The most tokens one request may generate (serve --max-length).
      vocab_size: Tokens in the vocabulary (a top_k at or above it is no limit).
      user_line_stop: End every reply at Pygmalion's user line ("\nYou:"), whatever the
        client asked (serve --no-user-line-stop turns it off).
      max_stops, max_bans, max_phrase_chars: How many stop strings, and banned strings
        plus token ids, a request may send, and how long each string may be
        (ServerSettings).
    """

    context_length: int
    max_new_tokens: int
    vocab_size: int
    user_line_stop: bool = True
    max_stops: int = 32
    max_bans: int = 1024
    max_phrase_chars: int = 256


@dataclass(frozen=True)
class Completion:
    """A parsed completion request, whatever API it came through.

    Attributes:
      prompt: The text to continue.
      options: Sampling options, clamped to the limits.
      context: Tokens of context for prompt plus reply (at most the model's).
      key: KoboldCpp's genkey, for abort and generate/check.
      n: Replies asked for.
      memory: Text kept before the prompt however long the prompt (KoboldCpp's memory).
      notes: What was changed to make the request fit.
    """

    prompt: str
    options: SamplingOptions
    context: int
    key: str = ""
    n: int = 1
    memory: str = ""
    notes: Notes = field(default_factory=Notes)

    @property
    def room(self) -> int:
        """The client's budget for the prompt: its context less the reply's tokens."""
        return self.context - self.options.max_new_tokens


def fit_context(asked: int | None, limits: Limits, notes: Notes, key: str) -> int:
    """The context to use: the client's, shortened to the model's."""
    if asked is None:
        return limits.context_length
    if asked > limits.context_length:
        notes.add(f"{key} {asked} is more than the model's context, "
                  f"{limits.context_length} used")
        return limits.context_length
    if asked < 2 * MIN_PROMPT_ROOM:
        raise BadRequest(f"field '{key}' is {asked}: at least {2 * MIN_PROMPT_ROOM} tokens "
                         f"are needed (the model has {limits.context_length})")
    return asked


def single_reply(n: int) -> None:
    """Refuses n > 1 on routes whose reply holds one text (KoboldAI, llama.cpp).

    The OpenAI routes return n choices instead (parse_completion checks n there).
    """
    if n != 1:
        raise BadRequest(f"field 'n' is {n}: this server returns one reply per request "
                         "(send n = 1)")


PYGMALION_USER_LINE = f"\n{USER}:"


def sampling_options(defaults: SamplingOptions, limits: Limits, context: int, notes: Notes,
                     *, max_new_tokens=None, temperature=None, top_k=None, top_p=None,
                     repetition_penalty=None, no_repeat_ngram_size=None, seed=None,
                     stop=()) -> SamplingOptions:
    """SamplingOptions from raw client numbers (None: the default), clamped and noted.

    The stops are the client's plus Pygmalion's own user line (unless limits say not): the
    model was trained with the user as "You", so it writes "You:" lines even when the
    client's prompt names the user otherwise (SillyTavern's "User:"), and such a line is
    never the character's reply. A story written with no stop strings may want them.
    """
    check_phrases("stop strings", stop, limits.max_stops, "--max-stops", limits)
    stops = tuple(dict.fromkeys((*stop, *((PYGMALION_USER_LINE,) if limits.user_line_stop
                                          else ()))))
    values = {"max_new_tokens": _max_new_tokens(max_new_tokens, defaults, limits, context,
                                                notes),
              "stop": stops, "seed": _seed(seed)}
    if temperature is not None:
        values["temperature"] = _at_least(temperature, 0.0, "temperature", notes)
    if top_k is not None:
        values["top_k"] = 0 if top_k <= 0 or top_k >= limits.vocab_size else top_k
    if top_p is not None:
        values["top_p"] = _top_p(top_p, notes)
    if repetition_penalty is not None:
        values["repetition_penalty"] = _repetition_penalty(repetition_penalty, notes)
    if no_repeat_ngram_size is not None:  # longer than the context means nothing more
        values["no_repeat_ngram_size"] = min(max(0, no_repeat_ngram_size), context)
    return defaults.with_overrides(**values)


def check_phrases(what: str, phrases, most: int, flag: str, limits: Limits) -> None:
    """Refuses more than most stop (or banned) strings, or one longer than the limit: each
    costs work on every token, and a ban is checked against every stop.

    Raises:
      BadRequest: too many, or one too long.
    """
    if len(phrases) > most:
        raise BadRequest(f"{len(phrases)} {what} sent: at most {most} are taken (serve "
                         f"{flag})")
    longest = max((len(p) for p in phrases if isinstance(p, str)), default=0)
    if longest > limits.max_phrase_chars:
        raise BadRequest(f"one of the {what} is {longest} characters long: at most "
                         f"{limits.max_phrase_chars} (serve --max-phrase-chars)")


def _max_new_tokens(asked, defaults, limits, context, notes) -> int:
    most = min(limits.max_new_tokens, context - MIN_PROMPT_ROOM)
    value = defaults.max_new_tokens if asked is None else asked
    if value > most:
        why = ("the server's limit" if most == limits.max_new_tokens
               else f"the most that leaves room for a prompt in a context of {context}")
        if asked is not None:
            notes.add(f"max new tokens {value} is more than {why}, {most} used")
        return most
    if value < 1:
        notes.add(f"max new tokens {value} is less than 1, 1 used")
        return 1
    return value


def _seed(seed):
    """None (random) for a missing or negative seed, as every frontend means by -1."""
    if seed is None or seed < 0:
        return None
    return seed % _SEED_RANGE


def _at_least(value: float, low: float, name: str, notes: Notes) -> float:
    if value < low:
        notes.add(f"{name} {value} is below {low}, {low} used")
        return low
    return value


def _top_p(value: float, notes: Notes) -> float:
    if value == 0:
        return 1.0  # KoboldAI and ooba clients send 0 for "off"
    if not 0 < value <= 1:
        notes.add(f"top_p {value} is outside (0, 1], 1.0 (off) used")
        return 1.0
    return value


def _repetition_penalty(value: float, notes: Notes) -> float:
    if value <= 0:
        notes.add(f"repetition penalty {value} is not positive, 1.0 (off) used")
        return 1.0
    return value
