"""In-process chat and text completion, with the server's semantics: what an app calls.

Completions(model) turns a chat (a card, its history and the user's message; or
OpenAI-style messages) or a raw prompt into what the model reads, as the server does: a
chat planned from its messages (pyg_edge.chat.chat_planner), a raw prompt cut to fit and
planned for prefix reuse across calls (pyg_edge.chat.planning), several replies from one
pass. Each call returns a CompletionStream (pyg_edge.chat.completion_stream), sync or
async; ChatSession, the command and the server's routes are thin layers over these calls.
"""

import threading
from dataclasses import replace

from pyg_edge.chat.chat_planner import ChatPlanner
from pyg_edge.chat.completion_stream import (  # noqa: F401  the public names live here too
    CompletionChunk,
    CompletionStream,
    Usage,
)
from pyg_edge.chat.fitting import Notes, fit_prompt
from pyg_edge.chat.messages import ChatParts, chat_parts
from pyg_edge.chat.planning import ReadPlanner
from pyg_edge.chat.prompt import PYGMALION_BANNED
from pyg_edge.chat.smart_context import DEFAULT_FRACTION
from pyg_edge.generation.sampling import SamplingOptions


class Completions:
    """Chat and text completion on one model, sharing its prefix cache across calls.

    Calls from several threads or asyncio tasks queue on the model (first come, first
    served); see docs/embedding.md.

    Args:
      model: A PygModel.
      reuse_prefixes: Cache prompts' prefixes across calls (chats: pyg_edge.chat.chat_planner;
        raw prompts: pyg_edge.chat.prefix_planner); False reads every prompt in full.
      smart_context: The share of the history a chat whose context is full keeps
        (pyg_edge.chat.smart_context); 0 cuts as little as fits.

    Attributes:
      chats: The ChatPlanner (every chat's cached block).
      planner: The ReadPlanner of raw prompts (smart context and prefix planning state).
    """

    def __init__(self, model, reuse_prefixes: bool = True,
                 smart_context: float = DEFAULT_FRACTION):
        self.model = model
        self.reuse_prefixes = reuse_prefixes
        self.chats = ChatPlanner(model.tokenizer.count, model.prefill_chunk, smart_context)
        self.planner = ReadPlanner(model.tokenizer, model.context_length, model.prefill_chunk,
                                   reuse_prefixes, smart_context)

    def create_character_reply(self, character, history: list, message: str | None = None,
                               options: SamplingOptions | None = None, *,
                               context: int | None = None, n: int = 1,
                               cancel: threading.Event | None = None, notices: bool = False,
                               text: bool = False, on_end=None, on_long_prompt=None,
                               **overrides) -> CompletionStream:
        """The character's next message in a chat: ChatSession's, the web page's.

        Args:
          character: The Character who replies.
          history: Earlier Messages, oldest first.
          message: The user's new message (never left out: see Raises), or None to answer
            the history as it ends.
          options, **overrides: Sampling options, and fields to change for this call.
          context: The client's context in tokens (default and most: the model's).
          n: Replies sampled from one prompt pass (others on the stream afterwards).
          cancel: Ends the call when set, also while it waits for its turn.
          notices: Also yield a chunk with a PromptNotice before a long prompt pass.
          text: Yield the reply's text pieces (str) instead of CompletionChunks.
          on_end: Called as on_end(stream, shown_text) once, when the stream ends (read to
            its end, cancelled or closed).
          on_long_prompt: Called before a long prompt pass (PygModel.stream's).

        Raises:
          PromptTooLongError: the persona, scenario and message do not fit beside
            max_new_tokens (older history, then examples, are left out first).
        """
        parts = ChatParts(character, list(history), message, ())
        return self._chat(parts, options, overrides, context, n, cancel, notices,
                          dict(text=text, on_end=on_end, on_long_prompt=on_long_prompt))

    def create_chat_completion(self, messages, options: SamplingOptions | None = None, *,
                               character: str = "", user_name: str = "",
                               context: int | None = None, n: int = 1,
                               cancel: threading.Event | None = None, notices: bool = False,
                               **overrides) -> CompletionStream:
        """The character's next message in an OpenAI-style chat.

        Args:
          messages: [{"role": "system" | "user" | "assistant", "content": ...}, ...];
            system messages are the persona, the assistant is the character (see
            pyg_edge.chat.messages, which also reads SillyTavern's Continue and Impersonate).
          options, **overrides: Sampling options, and fields to change for this call.
          character: Who replies, when the messages do not say.
          user_name: The user's name, whose lines the reply must not write.
          context, n, cancel, notices: As for create_character_reply.

        Raises:
          InvalidRequestError: the messages are malformed.
          PromptTooLongError: the persona and the last message do not fit.
        """
        parts = chat_parts(messages, character, user_name)
        return self._chat(parts, options, overrides, context, n, cancel, notices)

    def plan_chat(self, parts: ChatParts, max_new_tokens: int,
                  context: int | None = None):
        """The Prompt a chat's next call would read (planning it: the chat's cached block
        may move on, as for a call)."""
        prompt = self.chats.plan(parts, self._context(context), max_new_tokens)
        return prompt if self.reuse_prefixes else replace(prompt, static_prefix="")

    def create_completion(self, prompt: str, options: SamplingOptions | None = None, *,
                          memory: str = "", context: int | None = None, n: int = 1,
                          cancel: threading.Event | None = None, notices: bool = False,
                          **overrides) -> CompletionStream:
        """A continuation of a raw text prompt, cut from the left to fit the context.

        Pygmalion's markers (PYGMALION_BANNED) are banned, as in a chat.

        Args:
          prompt: The text to continue.
          memory: Text kept in front of the prompt however long it is (KoboldCpp's).
          options, context, n, cancel, notices, **overrides: As for
            create_chat_completion.
        """
        options = _chat_options(options, overrides)
        context, notes = self._context(context), Notes()
        text = fit_prompt(self.model.tokenizer, prompt, context - options.max_new_tokens, notes,
                          memory)
        return self._planned(text, options, context, n, cancel, notices, notes)

    def complete_prompt(self, prompt, options: SamplingOptions | None = None, *,
                        context: int | None = None, n: int = 1,
                        cancel: threading.Event | None = None, notices: bool = False,
                        **overrides) -> CompletionStream:
        """The continuation of a str, used as it is (not cut to fit) and planned as
        create_completion's, or the reply to a Prompt (pyg_edge.chat.prompt.build_prompt)
        read as it is, its static prefix cached.

        Raises:
          PromptTooLongError: the prompt and max_new_tokens do not fit in the context.
        """
        options = _chat_options(options, overrides)
        if not isinstance(prompt, str):
            return self._read(prompt, options, n, cancel, notices)
        return self._planned(prompt, options, self._context(context), n, cancel, notices,
                             Notes())

    def _chat(self, parts, options, overrides, context, n, cancel, notices,
              reader=None) -> CompletionStream:
        options = (options or SamplingOptions()).with_overrides(**overrides)
        prompt = self.plan_chat(parts, options.max_new_tokens, context)
        options = options.with_overrides(stop=options.stop + parts.stop)
        return self._read(prompt, options, n, cancel, notices, **(reader or {}))

    def _read(self, prompt, options, n, cancel, notices, text=False, on_end=None,
              on_long_prompt=None) -> CompletionStream:
        """A prompt read as it is (a chat's, already planned)."""
        stream = self.model.stream(prompt, options, cancel=cancel, notices=notices, n=n,
                                   on_long_prompt=on_long_prompt)
        return CompletionStream(stream, Notes(), n, text=text, prompt=prompt, on_end=on_end)

    def _context(self, context: int | None) -> int:
        return min(context or self.model.context_length, self.model.context_length)

    def _planned(self, text, options, context, n, cancel, notices, notes) -> CompletionStream:
        """A raw prompt, planned in the call's turn (it sees what is cached then)."""
        room = context - options.max_new_tokens

        def plan(cached):
            return self.planner.plan(text, options.stop, room, cached)

        stream = self.model.stream(text, options, cancel=cancel, notices=notices, plan=plan, n=n)
        return CompletionStream(stream, notes, n)


def _chat_options(options, overrides) -> SamplingOptions:
    """The options with Pygmalion's markers banned (a raw prompt here is a chat's text)."""
    options = (options or SamplingOptions()).with_overrides(**overrides)
    return options.with_overrides(banned=tuple(dict.fromkeys(PYGMALION_BANNED
                                                             + options.banned)))
