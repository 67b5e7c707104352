"""Cutting a streamed reply at its stop strings without ever showing part of one.

The stops are matched in one pass over the text (an Aho-Corasick automaton), however many
there are: each character costs the same whether a request sends one stop or thousands.
"""


class StopMatcher:
    """Every stop string at once, fed one character at a time.

    The state after each character says how long the longest end of the text read so far
    is that begins some stop (what must be held back), and the longest stop that ends
    there (where the reply is cut).

    Args:
      stop_strings: The strings to find (empty ones are ignored).
    """

    def __init__(self, stop_strings):
        self._next = [{}]  # state -> {character: state}; state 0 is the empty text
        self._depth = [0]  # how many characters each state has matched
        self._ends = [0]  # the longest stop ending at each state (0: none)
        for stop in dict.fromkeys(s for s in stop_strings if s):
            self._add(stop)
        self._fail = self._links()
        self.state = 0

    def _add(self, stop: str) -> None:
        state = 0
        for char in stop:
            following = self._next[state].get(char)
            if following is None:
                following = len(self._next)
                self._next[state][char] = following
                self._next.append({})
                self._depth.append(self._depth[state] + 1)
                self._ends.append(0)
            state = following
        self._ends[state] = len(stop)

    def _links(self) -> list:
        """Each state's fallback: the longest proper end of its text that is a state too."""
        fail, queue = [0] * len(self._next), list(self._next[0].values())
        for state in queue:  # breadth first: a fallback is always shallower, so done first
            for char, following in self._next[state].items():
                fallback = self._step(fail[state], char, fail)
                fail[following] = fallback if fallback != following else 0
                self._ends[following] = max(self._ends[following], self._ends[fail[following]])
                queue.append(following)
        return fail

    def _step(self, state: int, char: str, fail: list) -> int:
        while state and char not in self._next[state]:
            state = fail[state]
        return self._next[state].get(char, 0)

    def feed(self, text: str) -> int | None:
        """Reads text; returns where the earliest-starting stop that ends in it begins,
        relative to text (negative: in the text read before), or None."""
        cut = None
        for index, char in enumerate(text):
            self.state = self._step(self.state, char, self._fail)
            length = self._ends[self.state]
            if length:
                start = index + 1 - length
                cut = start if cut is None else min(cut, start)
        return cut

    def occurs_in(self, text: str) -> bool:
        """Whether any stop string occurs in text (read on its own, from the start)."""
        state = 0
        for char in text:
            state = self._step(state, char, self._fail)
            if self._ends[state]:
                return True
        return False

    @property
    def partial(self) -> int:
        """Characters at the end of the text read that may begin a stop string."""
        return self._depth[self.state]


class StopFilter:
    """Passes streamed text on, holding back whatever might begin a stop string.

    Args:
      stop_strings: Strings that end the reply; the reply ends before the first one.
      trim: Trim the reply, as a chat shows it: leading whitespace is dropped, and trailing
        whitespace only released once more text follows it. Raw completions keep both.
    """

    def __init__(self, stop_strings, trim: bool = True):
        self._matcher = StopMatcher(stop_strings)
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
        held = len(self._pending)
        self._pending += text
        found = self._matcher.feed(text)
        if found is not None:  # it may begin in the held-back text: held + found >= 0
            self.stopped = True
            out, self._pending = self._strip_end(self._pending[:held + found]), ""
            return out
        # Hold what may begin a stop string, and the whitespace before it (a reply that
        # ends there is trimmed).
        shown = self._pending[: len(self._pending) - self._matcher.partial]
        out = self._strip_end(shown)
        self._pending = self._pending[len(out):]
        return out

    def finish(self) -> str:
        """Ends the reply; returns held-back text that turned out not to be a stop string."""
        out, self._pending = self._strip_end(self._pending), ""
        return out

    def _strip_end(self, text: str) -> str:
        return text.rstrip() if self._trim else text
