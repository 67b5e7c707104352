"""Cutting a streamed reply at its stop strings without ever showing part of one."""


class StopFilter:
    """Passes streamed text on, holding back whatever might begin a stop string.

    Args:
      stop_strings: Strings that end the reply; the reply ends before the first one.
      trim: Trim the reply, as a chat shows it: leading whitespace is dropped, and trailing
        whitespace only released once more text follows it. Raw completions keep both.
    """

    def __init__(self, stop_strings, trim: bool = True):
        self._stops = tuple(s for s in stop_strings if s)
        self._pending = ""
        self._started = not trim
        self._trim = trim
        self.stopped = False

    def push(self, text: str) -> str:
        """Adds generated text; returns what can be shown now. Sets .stopped at a stop string."""
        if self.stopped:
            return ""
        if not self._started:
            text = text.lstrip()
            self._started = bool(text)
        self._pending += text
        cut = min((i for i in (self._pending.find(s) for s in self._stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            out, self._pending = self._strip_end(self._pending[:cut]), ""
            return out
        # Hold what may begin a stop string, and the whitespace before it (a reply that
        # ends there is trimmed).
        shown = self._pending[: len(self._pending) - self._partial_stop_length()]
        out = self._strip_end(shown)
        self._pending = self._pending[len(out):]
        return out

    def finish(self) -> str:
        """Ends the reply; returns held-back text that turned out not to be a stop string."""
        out, self._pending = self._strip_end(self._pending), ""
        return out

    def _strip_end(self, text: str) -> str:
        return text.rstrip() if self._trim else text

    def _partial_stop_length(self) -> int:
        """Length of the longest end of the pending text that begins some stop string."""
        longest = 0
        for stop in self._stops:
            for n in range(min(len(stop) - 1, len(self._pending)), longest, -1):
                if self._pending.endswith(stop[:n]):
                    longest = n
                    break
        return longest
