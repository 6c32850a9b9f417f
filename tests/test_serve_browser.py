"""The demo page in a real browser: Debian's chromium (/usr/bin/chromium) driven by Playwright, against the
same real server as tests/test_serve_api.py. Types a caption, clicks Generate, waits for the images and checks
that the right number of 64×64 PNGs arrived, decoded by the browser and by Pillow; keeps the last prompts;
shows a bad request's one-line error. Saves a screenshot (SAVE_SCREENSHOT=1: docs/serve_screenshot.png).

Skips, saying why, where chromium or Playwright is missing (`.ci/run` installs chromium with apt-get).
"""
from __future__ import annotations

import base64
import io
import os
import re
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from test_serve_api import REPO, shared_server, start_server

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips with the reason
    expect = None

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not found: install Debian's browser with `apt-get install chromium` (.ci/run does)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed: pip install -r requirements.txt")
    expect.set_options(timeout=60_000)  # a contended 2-core CI machine
    with sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        except Exception as e:  # e.g. missing shared libraries in a slim container
            pytest.skip(f"{CHROMIUM} does not start here: {' '.join(str(e).split())[:200]}")
        yield b
        b.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, request):
    """The tiny run's shared server; SERVE_TEST_RUN=RUN_DIR serves a real run instead (README screenshot)."""
    if not os.environ.get("SERVE_TEST_RUN"):
        yield shared_server(tmp_path_factory, request.config)
        return
    proc, url, _ = start_server(Path(os.environ["SERVE_TEST_RUN"]))
    yield dict(url=url)
    proc.terminate()
    proc.wait(20)


def test_page_draws_what_you_type_and_keeps_the_last_prompts(browser, server, tmp_path):  # browser first: skip early
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    console_errors = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.goto(server["url"] + "/")
    page.wait_for_selector("#examples button.example")
    info = httpx.get(server["url"] + "/api/info").json()
    assert page.text_content("#run-info") == (
        f"run {info['run']} · dataset {info['dataset']} · encoder {info['encoder']} ({info['encoder_dim']}-d) · "
        f"checkpoint step {info['step']} · 64×64 images")
    assert page.locator("#examples button.example").all_text_contents() == info["examples"]

    # an example caption fills the text box; generate 3 images for it
    first_example = page.locator("#examples button.example").first
    example = first_example.text_content()
    first_example.click()
    assert page.input_value("#caption") == example
    page.fill("#n", "3")
    page.click("#generate")
    expect(page.locator("#results .result img")).to_have_count(3)

    # then type our own caption, 5 images, seed 11
    caption = "this flower has five pointed yellow petals and a brown center"
    page.fill("#caption", "")
    page.type("#caption", caption)
    page.fill("#n", "5")
    page.fill("#seed", "11")
    page.click("#generate")
    expect(page.locator("#results .result")).to_have_count(2)
    newest = page.locator("#results .result").first
    expect(newest.locator("img")).to_have_count(5)
    assert newest.locator("h2").text_content() == caption
    meta = newest.locator(".meta").text_content()
    assert meta.startswith(f"5 images · seed 11 · encoder {info['encoder']} · step {info['step']} · generated in ")
    assert re.search(r"in [\d.]+ ms on the server \(\d+ ms here; batch of \d+\)$", meta), meta
    # the browser decoded every image at 64×64 ...
    sizes = page.eval_on_selector_all("#results .result:first-child img", "els => els.map(e => [e.complete, e.naturalWidth, e.naturalHeight])")
    assert sizes == [[True, 64, 64]] * 5
    # ... and so does Pillow; each download link is the same PNG under a .png name
    srcs = newest.locator("img").evaluate_all("els => els.map(e => e.src)")
    links = newest.locator("a").evaluate_all("els => els.map(e => [e.href, e.download])")
    images = []
    for k, (src, (href, name)) in enumerate(zip(srcs, links)):
        assert src.startswith("data:image/png;base64,") and href == src
        assert name == f"this-flower-has-five-pointed-yellow-peta-seed11-{k + 1}.png"
        image = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        assert (image.format, image.mode, image.size) == ("PNG", "RGB", (64, 64))
        images.append(np.asarray(image))
    assert len({im.tobytes() for im in images}) == 5  # five different noise vectors
    assert page.locator("#results .result").nth(1).locator("h2").text_content() == example  # older prompt kept

    # a bad request shows the server's one-line error and adds no card
    page.fill("#caption", " ".join(["petal"] * 101))
    page.click("#generate")
    expect(page.locator("#error")).to_be_visible()
    assert page.text_content("#error") == "text: 101 words; the limit is 100 words"
    assert page.locator("#results .result").count() == 2
    page.fill("#caption", caption)
    page.click("#generate")  # a third result for the screenshot, the error cleared
    expect(page.locator("#results .result")).to_have_count(3)
    assert page.is_hidden("#error")
    assert len(console_errors) == 1 and "422" in console_errors[0]  # the refused request, nothing else

    shot = REPO / "docs" / "serve_screenshot.png" if os.environ.get("SAVE_SCREENSHOT") else tmp_path / "serve.png"
    page.screenshot(path=str(shot), full_page=True)
    assert Image.open(shot).size[0] == 1100
    print(f"screenshot: {shot}")
    page.close()


def test_page_keeps_only_the_last_five_prompts(browser, server):
    page = browser.new_page()
    page.goto(server["url"] + "/")
    page.wait_for_selector("#examples button.example")
    page.fill("#n", "1")
    for i in range(7):
        page.fill("#caption", f"a flower with {i + 2} white petals")
        page.click("#generate")
        expect(page.locator("#results .result h2").first).to_have_text(f"a flower with {i + 2} white petals")
    titles = page.locator("#results .result h2").all_text_contents()
    assert titles == [f"a flower with {i} white petals" for i in (8, 7, 6, 5, 4)]
    page.close()

