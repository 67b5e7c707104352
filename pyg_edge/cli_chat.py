"""The terminal chat of `pyg-edge chat`: its loop, its /commands, and a reply as it streams
(cli.py's helpers; a message that does not fit is told and the chat goes on)."""

import functools
import sys

import click

from pyg_edge.chat.session import ChatSession
from pyg_edge.cli_cards import choose_greeting, tell_greetings
from pyg_edge.errors import PromptTooLongError

CHAT_HELP = "Commands: /regen, /undo, /greeting [N], /save FILE, /load FILE, /quit or end of input."


def chat_loop(session: ChatSession) -> None:
    name = session.character.name
    interactive = sys.stdin.isatty()
    if interactive:
        click.echo(CHAT_HELP, err=True)
    if session.history and not session.history[-1].is_user:
        click.echo(f"{name}: {session.history[-1].text}")
    tell_greetings(session)
    while True:
        try:
            line = input("You: " if interactive else "")
        except EOFError:
            return
        if not line.strip():
            continue
        if line.startswith("/"):
            if chat_command(session, line.strip()) == "quit":
                return
            continue
        show_reply(name, functools.partial(session.send, line))


def chat_command(session: ChatSession, line: str):
    command, _, argument = line.partition(" ")
    if command == "/quit":
        return "quit"
    if command == "/regen":
        show_reply(session.character.name, session.regenerate)
    elif command == "/greeting":
        choose_greeting(session, argument.strip())
    elif command == "/undo":
        removed = session.undo()
        click.echo(f"(removed {len(removed)} messages)", err=True)
    elif command in ("/save", "/load") and argument.strip():
        (session.save if command == "/save" else session.load)(argument.strip())
        click.echo(f"({command[1:]}d {argument.strip()})", err=True)
    else:
        click.echo(CHAT_HELP, err=True)
    return None


def show_reply(name: str, start) -> None:
    """Starts a turn (start() returns its stream) and prints the reply as it streams; a
    message that does not fit is told, and the chat goes on unchanged."""
    try:
        pieces = start()
    except PromptTooLongError as error:
        click.echo(f"(not sent: {error})", err=True)
        return
    # The name waits for the first piece, so a notice of a long prompt pass comes first.
    named = False
    try:
        for piece in pieces:
            if not named:
                click.echo(f"{name}: ", nl=False)
                named = True
            click.echo(piece, nl=False)
    except KeyboardInterrupt:
        pieces.close()  # Ctrl-C ends the reply, not the chat
    if not named:
        click.echo(f"{name}: ", nl=False)
    click.echo()


def announce_reading(tokens: int, seconds: float | None) -> None:
    """Tells the user a long prompt pass is starting (ChatSession's on_long_prompt)."""
    estimate = f", about {max(1, round(seconds)):,} s" if seconds is not None else ""
    click.echo(f"(reading {tokens:,} tokens{estimate})", err=True)
