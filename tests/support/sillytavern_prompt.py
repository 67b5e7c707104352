"""SillyTavern chats for the smart-context and prefix-reuse tests: its prompt layout is the
benchmarks/sillytavern.py's (not shipped), the chats are made up here."""

from pyg_edge.chat.characters import Character
from pyg_edge.chat.prompt import Message
from sillytavern import SEPARATOR, sillytavern_prompt, story_string

__all__ = ["SEPARATOR", "sillytavern_prompt", "story_string", "chat_prompts", "CARD",
           "SPEAKERS", "sentence", "words"]

# A chat of SillyTavern prompts for smart context (unit/test_smart_context.py, runtime's replay).
CARD = Character("Aqua", persona="Aqua is a water goddess of the guild.",
                 scenario="A guild hall by the lake.",
                 example_dialogue=("You: Hi there\nAqua: Hey!",))
WORDS = "storm harbour lantern rope sail tide gull anchor reef mast deck compass".split()
SPEAKERS = ("You", "Aqua")


def words(text: str) -> int:
    return len(text.split())


def sentence(i: int, n: int) -> str:
    return f"{i}: " + " ".join(WORDS[(i * 5 + k) % len(WORDS)] for k in range(n)) + "."


def chat_prompts(turns: int, count, context: int, response: int, reply_words: int = 6,
                 card: Character = CARD):
    """The prompts SillyTavern sends for a chat of `turns` turns, oldest first."""
    chat, prompts = [Message("Aqua", sentence(0, 4))], []
    for i in range(1, turns + 1):
        chat.append(Message("You", sentence(2 * i, 3), is_user=True))
        prompts.append(sillytavern_prompt(card, chat, count, context, response))
        chat.append(Message("Aqua", sentence(2 * i + 1, reply_words)))
    return prompts
