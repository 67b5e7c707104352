"""The built-in web chat page in a real headless Chromium (Debian's chromium + chromedriver).

.ci/run installs both; on a machine without them this test is skipped, saying why.
"""

import os
import shutil
import time
from pathlib import Path

import pytest

from pyg_edge.generation.sampling import SamplingOptions
from pyg_edge.generation.stats import PromptNotice
from support.cards import TAVERN_V1, b64, png_with_text
from support.server_harness import RunningServer
from support.slowed import SlowedModel

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER), reason="needs Debian's chromium and chromium-driver")


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1000,700"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def test_upload_a_card_chat_and_regenerate_in_a_real_browser(demo_pyg_model, browser,
                                                              tmp_path):
    """Also takes the README's picture of the page: PYG_EDGE_SCREENSHOTS=docs/images."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    server = RunningServer(demo_pyg_model, defaults=SamplingOptions(max_new_tokens=40))
    try:
        card = tmp_path / "aqua.png"
        card.write_bytes(png_with_text({"chara": b64(TAVERN_V1)}))
        browser.get(f"http://127.0.0.1:{server.port}/")
        assert browser.title == "pyg-edge chat"
        wait = WebDriverWait(browser, 30)
        browser.find_element(By.ID, "card").send_keys(str(card))
        wait.until(lambda b: b.find_element(By.ID, "char-name").text == "Aqua")
        messages = browser.find_elements(By.CSS_SELECTOR, ".msg")
        assert len(messages) == 1 and "Are you new here?" in messages[0].text

        box = browser.find_element(By.ID, "message")
        box.send_keys("Hello Aqua!", Keys.ENTER)
        wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, ".msg")) == 3
                   and b.find_element(By.ID, "status").text == "")
        user, reply = browser.find_elements(By.CSS_SELECTOR, ".msg")[1:]
        assert user.text.endswith("Hello Aqua!") and reply.text.startswith("Aqua")
        assert len(reply.text) > len("Aqua")

        browser.find_element(By.ID, "regen").click()
        wait.until(lambda b: b.find_element(By.ID, "status").text == ""
                   and len(b.find_elements(By.CSS_SELECTOR, ".msg")) == 3)
        shots = Path(os.environ.get("PYG_EDGE_SCREENSHOTS", tmp_path))
        shots.mkdir(parents=True, exist_ok=True)
        assert browser.save_screenshot(str(shots / "webchat.png"))
        assert (shots / "webchat.png").read_bytes().startswith(b"\x89PNG")
    finally:
        server.stop()


# Records the page's notice (text, whether it shows) and the reply bubble's text at every
# change of either.
WATCH_NOTICE = """
window.noticeSeen = [];
const notice = document.getElementById("notice");
new MutationObserver(() => {
  const bubbles = document.querySelectorAll(".msg");
  window.noticeSeen.push({text: notice.textContent, shown: notice.getClientRects().length > 0,
                          reply: bubbles[bubbles.length - 1].textContent});
}).observe(document.body, {attributes: true, childList: true, characterData: true,
                           subtree: true});
"""


def test_a_long_prompt_pass_shows_a_notice_until_the_first_token(tiny_model, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    from pyg_edge.generation.model import LONG_PROMPT_TOKENS
    from pyg_edge.generation.prefill import PromptSpeed

    tiny_model.long_prompt_tokens = 16  # the page's default chat is about 30 tokens
    tiny_model.prompt_speed = PromptSpeed()
    tiny_model.prompt_speed.record(200, 2.0)  # 100 tokens/s: "about 1 s"
    # After the notice is sent, the pass takes 0.5 s, as a long one would.
    server = RunningServer(SlowedModel(tiny_model, pause_after_notice),
                           defaults=SamplingOptions(max_new_tokens=8))
    try:
        browser.get(f"http://127.0.0.1:{server.port}/")
        assert not browser.find_element(By.ID, "notice").is_displayed()
        browser.execute_script(WATCH_NOTICE)
        browser.find_element(By.ID, "message").send_keys("Hello!", Keys.ENTER)
        WebDriverWait(browser, 30).until(
            lambda b: b.find_element(By.ID, "status").text == ""
            and len(b.find_elements(By.CSS_SELECTOR, ".msg")) == 3)
        seen = browser.execute_script("return window.noticeSeen")
        tokens = tiny_model.last_generation.read_tokens
        shown = [s for s in seen if s["shown"]]
        assert shown and shown[0]["text"] == f"Reading {tokens:,} tokens, about 1 s…"
        assert all(s["reply"] == "Companion" for s in shown)  # only before the reply's text
        assert seen[-1]["reply"] != "Companion" and not seen[-1]["shown"]
        assert not browser.find_element(By.ID, "notice").is_displayed()
    finally:
        server.stop()
        tiny_model.long_prompt_tokens = LONG_PROMPT_TOKENS
        tiny_model.prompt_speed = PromptSpeed()


def pause_after_notice(item):
    """A long prompt pass: 0.5 s after its notice was sent."""
    if isinstance(item, PromptNotice):
        time.sleep(0.5)


class CountingModel:
    """The tiny model, counting the batches of replies it is asked for."""

    def __init__(self, model):
        self._model, self.batches = model, 0

    def __getattr__(self, name):
        return getattr(self._model, name)

    def stream(self, *args, **kwargs):
        self.batches += kwargs.get("n", 1) > 1
        return self._model.stream(*args, **kwargs)


def test_regenerate_shows_a_spare_reply_without_asking_the_server(tiny_model, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    model = CountingModel(tiny_model)
    options = SamplingOptions(max_new_tokens=16, temperature=1.0, seed=4)
    server = RunningServer(model, defaults=options, replies=3)
    try:
        browser.get(f"http://127.0.0.1:{server.port}/")
        wait = WebDriverWait(browser, 30)
        browser.find_element(By.ID, "message").send_keys("Hello!", Keys.ENTER)
        wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, ".msg")) == 3
                   and b.find_element(By.ID, "status").text == "")
        first = browser.find_elements(By.CSS_SELECTOR, ".msg")[-1].text
        assert model.batches == 1
        browser.find_element(By.ID, "regen").click()
        wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, ".msg")[-1].text != first)
        assert len(browser.find_elements(By.CSS_SELECTOR, ".msg")) == 3
        assert model.batches == 1  # the spare came from the page, not the model
    finally:
        server.stop()
