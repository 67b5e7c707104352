"""SillyTavern, driven in headless Chromium against `pyg-edge serve`: does each action show
the right text, and what does the connection panel look like (docs/sillytavern.md).

    python scripts/sillytavern_check.py --sillytavern ~/SillyTavern [--model MODEL]
        [--shots docs/images]

Needs a SillyTavern checkout (1.12.6 is what pyg-edge is checked against) with its
`npm install` done, Node.js, Debian's chromium and chromium-driver, and selenium
(`pip install -e '.[test]'`). Without --model it serves the bundled demo model. It is
never part of the test suite: the tests stand on their own, with the request shapes read
from SillyTavern's source (tests/client_payloads.py); this is the check that the real
client agrees with them.

For each connection type (Text Completion -> KoboldCpp, Chat Completion -> Custom) it
sends a message, swipes, continues the reply and impersonates, and checks in SillyTavern's
own chat what each did: a reply by the character, a second swipe, the same message grown
at its end, and the user's next line in the input box, never a reply by the character.
It prints one line per check and exits 1 if any failed.
"""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

PYG_PORT, ST_PORT = 5001, 8000
CONNECTIONS = {
    "text-completion-koboldcpp": """
        $('#main_api').val('textgenerationwebui').trigger('change');
        $('#textgen_type').val('koboldcpp').trigger('change');
        $('#koboldcpp_api_url_text').val('http://127.0.0.1:%(port)d').trigger('input');
        $('#api_button_textgenerationwebui').trigger('click');""",
    "chat-completion-custom": """
        $('#main_api').val('openai').trigger('change');
        $('#chat_completion_source').val('custom').trigger('change');
        $('#custom_api_url_text').val('http://127.0.0.1:%(port)d/v1').trigger('input');
        $('#api_button_openai').trigger('click');""",
}
CHAT = "SillyTavern.getContext().chat"
BUSY = "return $('#mes_stop').is(':visible')"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sillytavern", type=Path, required=True)
    parser.add_argument("--model", help="a converted model folder [default: the demo]")
    parser.add_argument("--shots", type=Path, default=Path("docs/images"))
    parser.add_argument("--character", default="Seraphina",
                        help="a character SillyTavern ships with")
    args = parser.parse_args()
    args.shots.mkdir(parents=True, exist_ok=True)
    data = Path(tempfile.mkdtemp(prefix="st-data-"))  # a fresh user: first-run defaults
    servers = [start_pyg_edge(args.model), start_sillytavern(args.sillytavern, data)]
    failures = 0
    try:
        wait_for(f"http://127.0.0.1:{PYG_PORT}/api/v1/model", 300)
        wait_for(f"http://127.0.0.1:{ST_PORT}/", 120)
        browser = open_browser()
        try:
            open_chat(browser, args.character)
            for name, script in CONNECTIONS.items():
                failures += check_connection(browser, name, script, args.shots)
        finally:
            browser.quit()
    finally:
        for process in servers:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        shutil.rmtree(data, ignore_errors=True)
    print(f"{failures} check(s) failed" if failures else "all checks passed")
    sys.exit(1 if failures else 0)


def start_pyg_edge(model):
    command = [shutil.which("pyg-edge") or "pyg-edge", "serve", "--port", str(PYG_PORT),
               "--max-length", "60"]
    return subprocess.Popen(command + ([model] if model else []), start_new_session=True)


def start_sillytavern(folder: Path, data: Path):
    command = ["node", "server.js", "--port", str(ST_PORT), "--autorun", "false",
               "--listen", "false", "--dataRoot", str(data)]
    return subprocess.Popen(command, cwd=folder, start_new_session=True,
                            stdout=subprocess.DEVNULL)


def wait_for(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(url, timeout=5).read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"{url} did not answer in {seconds:.0f} s") from None
            time.sleep(1)


def open_browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1280,900"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


def until(browser, script: str, seconds: float = 60):
    """Waits until script (returning a value) returns something truthy; returns it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = browser.execute_script(script)
        if value:
            return value
        time.sleep(0.5)
    raise TimeoutError(f"waited {seconds:.0f} s for: {script}")


def open_chat(browser, character: str) -> None:
    browser.get(f"http://127.0.0.1:{ST_PORT}/")
    # The first start asks for the user's name (characters load after it): keep the default.
    until(browser, "return $('.popup-button-ok:visible').length > 0", 120)
    browser.execute_script("$('.popup-button-ok:visible').trigger('click')")
    until(browser, "return SillyTavern.getContext().characters.length > 0", 60)
    index = until(browser, f"""const i = SillyTavern.getContext().characters
        .findIndex(c => c.name === {character!r}); return i >= 0 ? String(i) : null""")
    browser.execute_script(f"$('.character_select[chid=\"{index}\"]').trigger('click')")
    until(browser, f"return {CHAT}.length >= 1")  # the character's greeting


def check_connection(browser, name: str, script: str, shots: Path) -> int:
    browser.execute_script(script % {"port": PYG_PORT})
    until(browser, "return SillyTavern.getContext().onlineStatus"
                   " && SillyTavern.getContext().onlineStatus !== 'no_connection'", 60)
    panel = shots / f"sillytavern-{name}-connection.png"
    browser.execute_script("$('#API-status-top').trigger('click')")  # the plug icon
    time.sleep(1)
    screenshot(browser, panel)
    browser.execute_script("$('#API-status-top').trigger('click')")
    failures = 0

    send(browser, "Hello! Who are you?")
    reply = last_message(browser)
    failures += check(name, "a reply by the character", not reply["is_user"]
                      and reply["mes"].strip() != "", reply["mes"])
    screenshot(browser, shots / f"sillytavern-{name}-reply.png")

    browser.execute_script("$('#chat .last_mes .swipe_right').trigger('click')")
    finish(browser)
    swiped = last_message(browser)
    failures += check(name, "a swipe brings a second reply",
                      len(swiped.get("swipes") or []) >= 2 and swiped["mes"].strip() != "",
                      swiped["mes"])

    before, count = last_message(browser)["mes"], chat_length(browser)
    for _ in range(3):  # a sampled continuation may end at once (a stop or the end token)
        browser.execute_script("$('#option_continue').trigger('click')")
        finish(browser)
        after = last_message(browser)
        if after["mes"] != before:
            break
    added = after["mes"][len(before.rstrip()):]
    failures += check(name, "continue adds to the same message, no new turn (grew by "
                      f"{len(added)} characters in up to 3 tries)",
                      not after["is_user"] and after["mes"].startswith(before.rstrip())
                      and chat_length(browser) == count
                      and not re.search(r"\n\w+:", added), after["mes"])

    browser.execute_script("$('#send_textarea').val('')")
    browser.execute_script("$('#option_impersonate').trigger('click')")
    finish(browser)
    typed = browser.execute_script("return $('#send_textarea').val()")
    character = browser.execute_script("return SillyTavern.getContext().name2")
    failures += check(name, "impersonate writes the user's line into the input box",
                      typed.strip() != "" and not typed.startswith(f"{character}:")
                      and chat_length(browser) == count, typed)
    browser.execute_script("$('#send_textarea').val('')")
    return failures


def screenshot(browser, path: Path) -> None:
    """The page without its notices and the URL box's history list."""
    browser.execute_script("toastr.clear(); document.activeElement.blur()")
    time.sleep(1)
    browser.save_screenshot(str(path))


def send(browser, text: str) -> None:
    browser.execute_script("$('#send_textarea').val(arguments[0]).trigger('input');"
                           "$('#send_but').trigger('click')", text)
    finish(browser)


def finish(browser) -> None:
    """Waits for the generation that was just started to end."""
    try:
        until(browser, BUSY, 10)
    except TimeoutError:
        pass  # it may have ended before the first look
    until(browser, "return !$('#mes_stop').is(':visible')", 600)
    time.sleep(1)


def chat_length(browser) -> int:
    return browser.execute_script(f"return {CHAT}.length")


def last_message(browser) -> dict:
    return browser.execute_script(f"const c = {CHAT}; return c[c.length - 1]")


def check(connection: str, what: str, ok: bool, text: str) -> int:
    shown = " ".join(str(text).split())[:100]
    print(f"{'ok  ' if ok else 'FAIL'} {connection}: {what}: {shown!r}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    main()
