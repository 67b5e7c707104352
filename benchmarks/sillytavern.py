"""Text-completion prompts shaped as SillyTavern builds them for a Pygmalion card.

From SillyTavern's public/script.js (Generate): the story string (description, then
"Scenario: ..."), example dialogue blocks each after "<START>", the chat start "<START>",
then the chat as "Name: text" lines, ending in "\\n{char}:". The budget is max_context
minus the response length; messages are added newest first while the running token count
stays under it, then example blocks while they still fit, so a growing chat first loses its
examples, then its oldest messages. The tests and benchmarks replay SillyTavern chats with
it (it is not shipped in the package); no SillyTavern code is copied.
"""

from pyg_edge.chat.characters import Character
from pyg_edge.chat.prompt import Message

SEPARATOR = "<START>\n"  # example separator and chat start in Pygmalion formatting


def story_string(card: Character) -> str:
    """The card's fixed text, as SillyTavern's story string renders it."""
    text = f"{card.persona}\n" if card.persona else ""
    return text + (f"Scenario: {card.scenario}\n" if card.scenario else "")


def sillytavern_prompt(card: Character, chat: list, count, max_context: int,
                       response_tokens: int) -> str:
    """The prompt SillyTavern sends for the character's next message.

    Args:
      card: The character.
      chat: Messages so far (pyg_edge.chat.prompt.Message), oldest first.
      count: Counts the tokens of a string.
      max_context: SillyTavern's context size setting.
      response_tokens: Its response length setting (amount_gen).
    """
    budget = max_context - response_tokens
    story = story_string(card)
    used = count(story) + count(SEPARATOR)
    kept = []
    for message in reversed(chat):
        used += count(_line(message))
        if used >= budget:
            break
        kept.insert(0, _line(message))
    examples = ""
    for block in card.example_dialogue:
        used += count(SEPARATOR + block.strip() + "\n")
        if used >= budget:
            break
        examples += SEPARATOR + block.strip() + "\n"
    return story + examples + SEPARATOR + "".join(kept) + f"{card.name}:"


def _line(message: Message) -> str:
    return f"{message.render()}\n"
