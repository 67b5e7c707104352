"""Reading request bodies: typed fields, ranges, and the 400 error a bad one gets.

A value of the wrong type is an error. A number out of range is an error too, unless the
caller passes Notes: then it is clamped, and the change is logged and noted for the reply,
because frontends send whatever their sliders allow and expect a reply, not a 400.
"""

import math

from pyg_edge.chat.fitting import Notes
from pyg_edge.errors import InvalidRequestError

__all__ = ["BadRequest", "Notes", "field", "first_field", "string_list"]

MAX_INTEGER = 2**63 - 1  # larger numbers in a body are refused, not clamped


class BadRequest(InvalidRequestError):
    """The request is malformed; the message says which field and what is expected."""


def field(body: dict, key: str, kind, default=None, low=None, high=None, required=False,
          clamp: Notes | None = None):
    """One field of a JSON body, checked.

    Args:
      body: The parsed body.
      key: The field.
      kind: int, float, str, bool or list.
      default: Its value when absent or null.
      low, high: Inclusive bounds for numbers.
      required: Absence is an error.
      clamp: When given, a number out of bounds is clamped (and noted) instead of refused.

    Raises:
      BadRequest: the field is missing, of another type, or out of bounds.
    """
    value = body.get(key)
    if value is None:
        if required:
            raise BadRequest(f"missing field '{key}'")
        return default
    if kind in (int, float) and isinstance(value, int) and abs(value) > MAX_INTEGER:
        raise BadRequest(f"field '{key}' is a number of {len(str(abs(value)))} digits: "
                         f"at most {MAX_INTEGER} is read")
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is int and isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, kind) or (kind in (int, float) and isinstance(value, bool)):
        raise BadRequest(f"field '{key}' must be {kind.__name__}, not {type(value).__name__}")
    if kind is float and not math.isfinite(value):
        raise BadRequest(f"field '{key}' must be finite")
    if low is not None and value < low or high is not None and value > high:
        if clamp is None:
            raise BadRequest(f"field '{key}' is {value}, expected {low} to {high}")
        bound = low if low is not None and value < low else high
        clamp.add(f"{key} {value} is out of range, {bound} used")
        value = bound
    return value


def first_field(body: dict, keys: tuple, kind, default=None, **checks):
    """The first of several names clients use for one field (e.g. max_tokens, n_predict)."""
    for key in keys:
        if body.get(key) is not None:
            return field(body, key, kind, default, **checks)
    return default


def string_list(body: dict, key: str) -> tuple:
    """A field that may be one string or a list of strings (stop sequences)."""
    value = body.get(key)
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,) if value else ()
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(v for v in value if v)
    raise BadRequest(f"field '{key}' must be a string or a list of strings")
