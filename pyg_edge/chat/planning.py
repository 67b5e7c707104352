"""What the model reads of a client's raw-text prompt: smart context, then the prefix to
cache. (A chat sent as messages is planned from its messages: pyg_edge.chat.chat_planner.)

Runs in the call's turn (PygModel.stream's plan), so it sees the prefixes cached at that
moment, and one call at a time.
"""

from pyg_edge.chat.prefix_planner import PrefixPlanner
from pyg_edge.chat.smart_context import DEFAULT_FRACTION, SmartContext, speakers_from_stops


class ReadPlanner:
    """Plans each raw-text prompt of the chats on one model.

    Args:
      tokenizer: The model's TextTokenizer.
      context_length: The model's context.
      prefill_chunk: The model's prefill chunk (0 for none).
      reuse_prefixes: Give raw-text prompts a static prefix that CTranslate2 caches across
        calls (pyg_edge.chat.prefix_planner), so a chat's turns skip what they share.
      smart_context: With reuse_prefixes, the share of the history a chat whose context
        is full keeps (pyg_edge.chat.smart_context); 0 reads every prompt as it is.

    Attributes:
      smart: The SmartContext (its .last: the latest cut or match).
      prefixes: The PrefixPlanner, or None without prefix reuse.
    """

    def __init__(self, tokenizer, context_length: int, prefill_chunk: int = 0,
                 reuse_prefixes: bool = True, smart_context: float = DEFAULT_FRACTION):
        self.tokenizer = tokenizer
        fraction = smart_context if reuse_prefixes else 0
        # With smart context a chat keeps one prefix while it grows (a new prefix empties
        # CTranslate2's cache by reloading the model), and is cut when what follows the
        # prefix outgrows one exact pass.
        self.prefixes = (PrefixPlanner(context_length, prefill_chunk,
                                       keep_cached=bool(fraction))
                         if reuse_prefixes else None)
        self.smart = SmartContext(tokenizer.count, fraction,
                                  max_dynamic=prefill_chunk + 1 if prefill_chunk else None)
        self.last_read = ""  # the text the latest planned call read

    def plan(self, prompt, stops: tuple, room: int, cached) -> tuple:
        """(What the model reads of prompt, static_tokens for a str prompt).

        Args:
          prompt: The raw prompt (a str).
          stops: The call's stop strings (they name the chat's speakers).
          room: The client's budget for the prompt (its context less max_new_tokens).
          cached: The prefixes CTranslate2 holds now.
        """
        read, static_tokens = self._plan(prompt, stops, room, cached)
        self.last_read = read
        return read, static_tokens

    def _plan(self, text: str, stops, room, cached) -> tuple:
        if self.prefixes is None:
            return text, 0
        ids = self.tokenizer.encode(text)
        outgrown = bool(self.smart.fraction) and self.prefixes.outgrown(ids, cached)
        fitted = self.smart.fit(text, room, _speakers(stops, text), outgrown=outgrown)
        if not fitted.static_chars:
            return text, self.prefixes.plan(ids, cached)
        static = fitted.text[:fitted.static_chars]
        ids = self.tokenizer.encode(fitted.text)
        return fitted.text, self.tokenizer.prefix_length(ids, static)


def _speakers(stops, text: str) -> tuple:
    """Who starts message lines: the stop strings' speakers and the prompt's open turn.

    Fewer than two names (a client that sends no stop strings) says too little: then any
    "Name:" line starts a message.
    """
    last = text[text.rfind("\n") + 1:]
    opened = (last.split(":")[0],) if last.rstrip().endswith(":") else ()
    names = tuple(dict.fromkeys(speakers_from_stops(stops) + opened))
    return names if len(names) >= 2 else ()
