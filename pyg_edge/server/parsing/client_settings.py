"""What frontends ask for beyond the basic samplers: no end token, a minimum length, bans,
and the samplers CTranslate2 lacks, which are named in the reply rather than dropped.

Every completion route (KoboldAI, KoboldCpp, OpenAI, text-generation-webui, llama.cpp)
reads its body through apply_client_settings, so a setting means the same on each:

- Ban EOS (`use_default_badwordsids`, `ban_eos_token`, `ignore_eos`, `bypass_eos`): the
  end token may not come before max_new_tokens (CTranslate2's min_length); stop strings
  still end the reply.
- Minimum length (`min_length`, `min_tokens`): the end token may not come earlier.
- Bans (`banned_strings`, `banned_tokens`, `custom_token_bans`, `logit_bias` of -100 or
  less, llama.cpp's `[id, false]` pairs): suppressed as pyg-edge's banned sequences. Only
  ids in the model's vocabulary (GPT-2's) count; others are named in the warnings.
- Samplers CTranslate2 does not run (min_p, typical, tfs, top_a, mirostat, DRY, XTC,
  smoothing, dynamic temperature, grammar, penalties...): each non-neutral value is a
  warning in the reply (and logged once per setting). When one of the truncating ones is
  on and nothing CTranslate2 runs truncates (top_k 0, top_p 1), pure sampling at the
  client's temperature would follow: pyg-edge then samples with top_p 0.9 and at most
  temperature 1.0 instead, and says so (SillyTavern's Universal-Light preset asks for
  temperature 1.25 with min_p 0.1; Pygmalion 2.7B writes noise at 1.25 untruncated).
"""

import logging
import re

from pyg_edge.generation.sampling import SamplingOptions
from pyg_edge.server.parsing.fields import BadRequest, Notes
from pyg_edge.server.parsing.sampling import Limits, check_phrases

logger = logging.getLogger("pyg_edge")

_BAN_EOS = ("use_default_badwordsids", "ban_eos_token", "ignore_eos", "bypass_eos")
_MIN_LENGTH = ("min_length", "min_tokens")
# Samplers CTranslate2 lacks: field -> its neutral value(s). Truncating ones are marked.
_UNSUPPORTED = {
    "min_p": (0,), "typical": (1, 0), "typical_p": (1, 0), "tfs": (1, 0), "tfs_z": (1, 0),
    "top_a": (0,), "mirostat": (0,), "mirostat_mode": (0,), "epsilon_cutoff": (0,),
    "eta_cutoff": (0,), "dry_multiplier": (0,), "xtc_probability": (0,),
    "smoothing_factor": (0,), "dynatemp_range": (0,), "dynamic_temperature": (False,),
    "grammar": ("",), "grammar_string": ("",), "presence_penalty": (0,),
    "frequency_penalty": (0,), "penalty_alpha": (0,), "num_beams": (1,),
    "encoder_repetition_penalty": (1,), "guidance_scale": (1,), "negative_prompt": ("",),
    "skew": (0,),
}
_TRUNCATING = ("min_p", "typical", "typical_p", "tfs", "tfs_z", "top_a", "mirostat",
               "mirostat_mode", "epsilon_cutoff", "eta_cutoff")
SUBSTITUTE_TOP_P = 0.9
_warned = set()


def apply_client_settings(body: dict, options: SamplingOptions, limits: Limits,
                          notes: Notes) -> SamplingOptions:
    """options with the body's EOS, length and ban settings; notes what is not honoured.

    Raises:
      BadRequest: a ban or logit_bias is malformed, too many are sent, or every token is
        banned.
    """
    options = _length_settings(body, options)
    options = _bans(body, options, limits, notes)
    ignored = _unsupported(body, notes)
    if any(name in _TRUNCATING for name in ignored) and options.top_k == 0 \
            and options.top_p >= 1 and options.temperature > 0:
        temperature = min(options.temperature, 1.0)
        notes.add(f"{', '.join(n for n in ignored if n in _TRUNCATING)} cannot be run here: "
                  f"sampled with top_p {SUBSTITUTE_TOP_P} and temperature {temperature} "
                  "instead, so the reply is not noise")
        options = options.with_overrides(top_p=SUBSTITUTE_TOP_P, temperature=temperature)
    return options


def _length_settings(body: dict, options: SamplingOptions) -> SamplingOptions:
    if any(body.get(key) is True for key in _BAN_EOS):
        return options.with_overrides(min_new_tokens=options.max_new_tokens)
    asked = [body[k] for k in _MIN_LENGTH if _is_int(body.get(k)) and body[k] > 0]
    if asked:
        return options.with_overrides(
            min_new_tokens=min(max(asked), options.max_new_tokens))
    return options


def _bans(body: dict, options: SamplingOptions, limits: Limits, notes: Notes):
    strings = [s for key in ("banned_strings", "banned_tokens")
               for s in _list(body.get(key)) if isinstance(s, str) and s]
    bias_ids, bias_strings = _logit_bias_bans(body.get("logit_bias"), notes)
    strings = list(dict.fromkeys(strings + bias_strings))
    ids = list(dict.fromkeys(_custom_token_bans(body.get("custom_token_bans"), notes)
                             + bias_ids))
    check_phrases("banned strings and token ids", strings + ids, limits.max_bans,
                  "--max-bans", limits)
    vocab_size = limits.vocab_size
    ours = [i for i in ids if 0 <= i < vocab_size]
    if len(ours) < len(ids):
        foreign = sorted(set(ids) - set(ours))
        notes.add(f"token ids {foreign[:8]} are not in this model's vocabulary (GPT-2's, "
                  f"{vocab_size} tokens): not banned")
    if len(ours) >= vocab_size:
        raise BadRequest(f"every token of the vocabulary ({vocab_size}) is banned: nothing "
                         "could be generated")
    if not strings and not ours:
        return options
    logger.debug("banned for this request: %d strings, %d token ids", len(strings), len(ours))
    return options.with_overrides(banned=options.banned + tuple(strings),
                                  banned_ids=tuple(dict.fromkeys(options.banned_ids + tuple(ours))))


_TOKEN_ID = re.compile(r"\s*-?[0-9]{1,19}\s*")  # ASCII digits only: "\u00b2" is no id


def token_id(value) -> int | None:
    """A token id as clients send one: an int, or a str of ASCII digits; else None."""
    if _is_int(value):
        return value
    if isinstance(value, str) and _TOKEN_ID.fullmatch(value):
        return int(value)
    return None


def _custom_token_bans(value, notes: Notes) -> list:
    """SillyTavern's "1,2,3" (a string) or [1, 2, 3] (Aphrodite's shape)."""
    parts = value.split(",") if isinstance(value, str) else _list(value)
    parts = [p for p in parts if not (isinstance(p, str) and not p.strip())]
    ids = [token_id(p) for p in parts]
    odd = [p for p, i in zip(parts, ids, strict=True) if i is None]
    if odd:
        notes.add(f"custom_token_bans: {len(odd)} entries are not token ids "
                  f"({str(odd[:3])[:80]}): ignored")
    return [i for i in ids if i is not None]


def _logit_bias_bans(value, notes: Notes) -> tuple:
    """(ids, strings) whose bias bans them: OpenAI's {"id": -100}, llama.cpp's
    [[id or text, false or bias]] (text: a banned string, as llama.cpp tokenizes it).

    Raises:
      BadRequest: as OpenAI: a key that is not a token id, a bias that is not a number
        from -100 to 100; or a llama.cpp entry that is not a pair.
    """
    if value is None or value == []:
        return [], []
    if isinstance(value, dict):
        pairs = list(value.items())
        for key, _ in pairs:
            if token_id(key) is None:
                raise BadRequest(f"logit_bias: key {str(key)[:40]!r} is not a token id")
    elif isinstance(value, list) and all(isinstance(p, list) and len(p) == 2 for p in value):
        pairs = [tuple(p) for p in value]
    else:
        raise BadRequest("field 'logit_bias' must map token ids to biases ({\"50256\": "
                         "-100}) or be llama.cpp's list of [token, bias] pairs")
    ids, strings, other = [], [], 0
    for key, bias in pairs:
        if bias is not False and not (_is_number(bias) and -100 <= bias <= 100):
            raise BadRequest(f"logit_bias: the bias of {str(key)[:40]!r} must be a number "
                             "from -100 to 100")
        token = token_id(key)
        if bias is False or bias <= -100:
            if token is not None:
                ids.append(token)
            elif isinstance(key, str) and key:
                strings.append(key)
            else:
                raise BadRequest(f"logit_bias: {str(key)[:40]!r} is neither a token id nor "
                                 "text")
        elif bias != 0:
            other += 1
    if other:
        notes.add(f"logit_bias: {other} bias(es) other than a ban (-100) ignored")
    return ids, strings


def _unsupported(body: dict, notes: Notes) -> list:
    """The non-neutral settings of samplers CTranslate2 lacks, each noted."""
    ignored = []
    for name, neutral in _UNSUPPORTED.items():
        value = body.get(name)
        if value is None or value in neutral or value == {} or value == []:
            continue
        ignored.append(name)
        notes.append(f"{name} {value!r} is not supported (CTranslate2 has no such sampler): "
                     "ignored")
        if name not in _warned:
            _warned.add(name)
            logger.warning("requests ask for %s, which pyg-edge cannot run: ignored", name)
    return ignored


def ignored_settings() -> list:
    """The unsupported settings requests have asked for since the server started."""
    return sorted(_warned)


def _list(value) -> list:
    return value if isinstance(value, list) else []


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
