"""What `pyg-edge chat` and `pyg-edge prompt` tell about a card, on stderr (cli.py's helpers:
the load notice, the greetings to choose from, the lore a chat activates)."""

import click

from pyg_edge.chat.characters import Character, load_character
from pyg_edge.chat.lore_placement import explain_lore


def load_card(path) -> Character:
    """The card at path; what it holds but pyg-edge does not apply is told on stderr."""
    character = load_character(path)
    if character.notice:
        click.echo(f"({character.notice})", err=True)
    return character


def tell_greetings(session) -> None:
    """Before the first message: says the card has other greetings to choose from."""
    if len(session.history) == 1 and len(session.character.greetings) > 1:
        click.echo(f"({len(session.character.greetings)} greetings: /greeting lists them, "
                   "/greeting N opens the chat with one)", err=True)


def choose_greeting(session, argument: str) -> None:
    """/greeting lists the card's greetings; /greeting N opens the chat with the N-th."""
    if not argument:
        for number, text in enumerate(session.character.greetings):
            click.echo(f"  {number}: {text[:70]}{'…' if len(text) > 70 else ''}", err=True)
        return
    try:
        text = session.use_greeting(int(argument))
    except ValueError as error:
        click.echo(f"({error if argument.isdigit() else 'expected a number'})", err=True)
        return
    click.echo(f"{session.character.name}: {text}")


def tell_lore(character: Character, history: list, message: str, count, context: int) -> None:
    """`pyg-edge prompt --lore`: the entries that activate and why, on stderr."""
    click.echo(explain_lore(character, history, message, count, context), err=True)
