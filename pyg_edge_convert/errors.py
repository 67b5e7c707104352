"""The one exception the converter raises for anything wrong with its input or output."""


class ConversionError(Exception):
    """A conversion cannot go on; the message is one line a user can act on."""
