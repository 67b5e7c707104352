"""Reading request bodies: typed fields, ranges, and the 400 error a bad one gets."""

import math


class BadRequest(Exception):
    """The request is malformed; the message says which field and what is expected."""


def field(body: dict, key: str, kind, default=None, low=None, high=None, required=False):
    """One field of a JSON body, checked.

    Args:
      body: The parsed body.
      key: The field.
      kind: int, float, str, bool or list.
      default: Its value when absent or null.
      low, high: Inclusive bounds for numbers.
      required: Absence is an error.

    Raises:
      BadRequest: the field is missing, of another type, or out of bounds.
    """
    value = body.get(key)
    if value is None:
        if required:
            raise BadRequest(f"missing field '{key}'")
        return default
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is int and isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, kind) or (kind in (int, float) and isinstance(value, bool)):
        raise BadRequest(f"field '{key}' must be {kind.__name__}, not {type(value).__name__}")
    if kind is float and not math.isfinite(value):
        raise BadRequest(f"field '{key}' must be finite")
    if low is not None and value < low or high is not None and value > high:
        raise BadRequest(f"field '{key}' is {value}, expected {low} to {high}")
    return value


def string_list(body: dict, key: str) -> tuple:
    """A field that may be one string or a list of strings (stop sequences)."""
    value = body.get(key)
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise BadRequest(f"field '{key}' must be a string or a list of strings")
