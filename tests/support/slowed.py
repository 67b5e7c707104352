"""A model whose generation thread is slowed where it hands items to the reader: a stand-in
for the 2.7B model's pace in server tests."""


class SlowedModel:
    """model, with after(item) called in the generation thread after each item it hands over
    (a piece, a PromptNotice), while the call holds the model's turn."""

    def __init__(self, model, after):
        self._model = model
        self._after = after

    def __getattr__(self, name):
        return getattr(self._model, name)

    def stream(self, *args, **kwargs):
        return self._slowed(self._model.stream(*args, **kwargs))

    def _slowed(self, stream):
        call = stream._call  # the generation thread hands each item over through emit
        emit, after = call.emit, self._after

        def slowed_emit(item):
            emit(item)
            after(item)

        call.emit = slowed_emit
        return stream
