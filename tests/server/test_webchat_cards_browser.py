"""The web chat page as a card user expects, in a real headless Chromium: the card's picture,
its alternate greetings, a chat kept across reloads, saved and loaded as SillyTavern JSONL,
the last message edited and deleted, reply length and temperature, a phone-sized screen.

Screenshots go to PYG_EDGE_SCREENSHOTS (default: the test's tmp folder).
"""

import json
import os
import time
from pathlib import Path

import pytest

from pyg_edge.chat.prompt import Message
from pyg_edge.chat.session import read_chat, write_chat
from pyg_edge.generation.sampling import SamplingOptions
from support.browser import CHROMEDRIVER, CHROMIUM, chromium
from support.cards import b64, png_picture
from support.server_harness import RecordingModel, RunningServer

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER), reason="needs Debian's chromium and chromium-driver")

CARD = {"spec": "chara_card_v2", "spec_version": "2.0", "data": {
    "name": "Seraphina", "description": "A guardian of the forest glade.",
    "first_mes": "*You wake in a glade.* Rest now.",
    "alternate_greetings": ["*She smiles.* Welcome back, {{user}}.", "Who goes there?"],
    "creator_notes": "A gentle healer.",
    "character_book": {"entries": [{"keys": ["glade"], "content": "The glade is warded.",
                                    "enabled": True, "insertion_order": 1}]}}}


@pytest.fixture
def shots(tmp_path) -> Path:
    folder = Path(os.environ.get("PYG_EDGE_SCREENSHOTS", "") or tmp_path / "screens")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def wait_for(browser, condition):
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 30).until(lambda b: condition())


@pytest.fixture
def served(demo_pyg_model):
    model = RecordingModel(demo_pyg_model)
    server = RunningServer(model, defaults=SamplingOptions(max_new_tokens=24))
    yield server, model
    server.stop()


def texts(browser):
    from selenium.webdriver.common.by import By

    return [m.text for m in browser.find_elements(By.CSS_SELECTOR, ".msg")]


def wait_idle(browser, count):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 60).until(
        lambda b: len(b.find_elements(By.CSS_SELECTOR, ".msg")) == count
        and b.find_element(By.ID, "status").text == "")


def upload_card(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    card = tmp_path / "seraphina.png"
    card.write_bytes(png_picture({"chara": b64(CARD)}))
    browser.find_element(By.ID, "card").send_keys(str(card))
    WebDriverWait(browser, 30).until(
        lambda b: b.find_element(By.ID, "char-name").text == "Seraphina")


def picture_width(browser, selector):
    return browser.execute_script(
        "const img = document.querySelector(arguments[0]);"
        "return img && img.complete ? img.naturalWidth : 0;", selector)


def test_picture_greetings_options_and_a_reload(served, tmp_path, shots):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    server, model = served
    browser = chromium(1000, 700)
    try:
        browser.get(f"http://127.0.0.1:{server.port}/")
        upload_card(browser, tmp_path)
        # The card's own picture beside its name and its messages.
        assert picture_width(browser, "#avatar") == 64
        assert picture_width(browser, ".row.char .avatar") == 64
        assert texts(browser) == ["Seraphina\n*You wake in a glade.* Rest now."]
        assert "A gentle healer." in browser.find_element(By.ID, "about").get_attribute(
            "textContent")
        # An alternate greeting opens the chat.
        greeting = Select(browser.find_element(By.ID, "greeting"))
        assert len(greeting.options) == 3
        browser.find_element(By.ID, "regen").click()  # before the chat: the next greeting
        assert texts(browser) == ["Seraphina\n*She smiles.* Welcome back, You."]
        greeting.select_by_index(2)
        assert texts(browser) == ["Seraphina\nWho goes there?"]
        greeting.select_by_index(1)
        assert texts(browser) == ["Seraphina\n*She smiles.* Welcome back, You."]
        # Reply length and temperature go with the turn.
        browser.find_element(By.ID, "length").send_keys("6")
        browser.find_element(By.ID, "temperature").send_keys("0")
        browser.find_element(By.ID, "message").send_keys("Where am I?", Keys.ENTER)
        wait_idle(browser, 3)
        assert model.options.max_new_tokens == 6 and model.options.temperature == 0
        assert not browser.find_element(By.ID, "greeting").is_enabled()  # the chat began
        before = texts(browser)
        browser.save_screenshot(str(shots / "webchat-card.png"))
        # A reload keeps the card, its picture, the chat and the options.
        browser.refresh()
        wait_idle(browser, 3)
        assert texts(browser) == before
        assert browser.find_element(By.ID, "char-name").text == "Seraphina"
        assert picture_width(browser, "#avatar") == 64
        assert browser.find_element(By.ID, "length").get_attribute("value") == "6"
        # The page sends the card back whole: the lorebook arrives with the turn.
        browser.find_element(By.ID, "message").send_keys("The glade?", Keys.ENTER)
        wait_idle(browser, 5)
    finally:
        browser.quit()


def test_save_load_edit_and_delete(served, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    server, _ = served
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser = chromium(1000, 700, downloads=downloads)
    try:
        browser.get(f"http://127.0.0.1:{server.port}/")
        upload_card(browser, tmp_path)
        browser.find_element(By.ID, "message").send_keys("Hello!", Keys.ENTER)
        wait_idle(browser, 3)
        shown = texts(browser)
        # Saved as SillyTavern JSONL, which pyg-edge's own reader takes.
        browser.find_element(By.ID, "save").click()
        deadline = time.monotonic() + 20
        while not list(downloads.glob("*.jsonl")) and time.monotonic() < deadline:
            time.sleep(0.1)
        [saved] = downloads.glob("*.jsonl")
        messages = read_chat(saved, "Seraphina")
        assert [f"{m.speaker}\n{m.text}" for m in messages] == shown
        assert json.loads(saved.read_text().splitlines()[0])["character_name"] == "Seraphina"
        # A new chat, then the saved one loads back.
        browser.find_element(By.ID, "new-chat").click()
        assert len(texts(browser)) == 1
        browser.find_element(By.ID, "load-chat").send_keys(str(saved))
        wait_for(browser, lambda: texts(browser) == shown)
        # A chat pyg-edge wrote loads too.
        other = tmp_path / "other.jsonl"
        write_chat(other, "Seraphina", [Message("Seraphina", "Hi."),
                                        Message("You", "Yo.", is_user=True)])
        browser.find_element(By.ID, "load-chat").send_keys(str(other))
        wait_for(browser, lambda: texts(browser) == ["Seraphina\nHi.", "You\nYo."])
        # The last message: edited in place, then deleted; both kept across a reload.
        browser.find_element(By.ID, "edit-last").click()
        editable = browser.find_element(By.CSS_SELECTOR, ".row:last-child .text")
        assert editable.get_attribute("contenteditable") == "true"
        editable.send_keys(Keys.CONTROL, "a")
        editable.send_keys("Yo, edited.", Keys.ENTER)
        assert texts(browser)[-1] == "You\nYo, edited."
        browser.refresh()
        assert texts(browser) == ["Seraphina\nHi.", "You\nYo, edited."]
        browser.find_element(By.ID, "delete-last").click()
        browser.refresh()
        assert texts(browser) == ["Seraphina\nHi."]
    finally:
        browser.quit()


def test_a_phone_sized_screen(served, tmp_path, shots):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    server, _ = served
    browser = chromium(390, 844)
    try:
        browser.get(f"http://127.0.0.1:{server.port}/")
        upload_card(browser, tmp_path)
        browser.find_element(By.ID, "message").send_keys("Hello!", Keys.ENTER)
        wait_idle(browser, 3)
        width = browser.execute_script("return document.documentElement.scrollWidth")
        assert width <= 390  # nothing sideways to scroll
        for element in ("message", "send", "regen", "card", "greeting", "char-name"):
            rect = browser.execute_script(
                "const r = document.getElementById(arguments[0]).getBoundingClientRect();"
                "return [r.left, r.top, r.right, r.bottom, r.width];", element)
            assert rect[0] >= 0 and rect[2] <= 390 and rect[1] >= 0 and rect[3] <= 844, (
                element, rect)
            assert rect[4] > 0, element
        assert picture_width(browser, "#avatar") == 64
        browser.save_screenshot(str(shots / "webchat-phone.png"))
    finally:
        browser.quit()
