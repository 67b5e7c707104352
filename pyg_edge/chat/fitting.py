"""Fitting a raw prompt into the context: cut from the left, keeping what must stay in front.

Frontends that count tokens differently, or believe the context is larger than it is,
send prompts that do not fit; KoboldAI, KoboldCpp and text-generation-webui all cut them
from the left, and so does every completion route here. What stays in front: KoboldCpp's
separate `memory` field, and the persona block of a Pygmalion-format prompt (everything
before its first <START>), as long as it takes at most half the room.
"""

import logging
import re

logger = logging.getLogger("pyg_edge")



class Notes(list):
    """What was changed in a request to make it fit (one line each), for logs and replies."""

    def add(self, message: str) -> None:
        logger.info("request adjusted: %s", message)
        self.append(message)


_PERSONA_HEAD = re.compile(r"^[^\n]{1,60}'s Persona:[^\n]*\n(?:.*\n)*?<START>\n")


def fit_prompt(tokenizer, prompt: str, room: int, notes: Notes, memory: str = "") -> str:
    """memory + prompt, cut from the left of prompt to at most room tokens.

    Args:
      tokenizer: The model's TextTokenizer.
      prompt: The text to continue.
      room: Tokens the prompt may take (context minus the reply).
      notes: Gets a line when the prompt is cut.
      memory: Text to keep before the prompt (cut from the left only if it alone is
        too long).
    """
    head = memory
    if not memory and (match := _PERSONA_HEAD.match(prompt)):
        head, prompt = match.group(0), prompt[match.end():]
    total = tokenizer.count(head + prompt)
    if total <= room:
        return head + prompt
    head_tokens = tokenizer.count(head)
    if head_tokens > room // 2 and not memory:
        head, prompt, head_tokens = "", head + prompt, 0  # a long persona gets no shelter
    kept_head = tokenizer.keep_last(head, room) if head_tokens > room else head
    rest = max(room - tokenizer.count(kept_head), 0)
    fitted = kept_head + (tokenizer.keep_last(prompt, rest) if rest else "")
    # Tokens counted apart can merge at the join; trim further on the rare overshoot.
    while tokenizer.count(fitted) > room and rest > 0:
        rest -= 1
        fitted = kept_head + (tokenizer.keep_last(prompt, rest) if rest else "")
    if tokenizer.count(fitted) > room:
        fitted = tokenizer.keep_last(fitted, room)
    notes.add(f"prompt of {total} tokens cut from the left to {tokenizer.count(fitted)} "
              f"to fit the context")
    return fitted
