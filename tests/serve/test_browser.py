"""The page of ``lavish serve`` in a real headless Chromium (Debian's chromium + chromium-driver, via Selenium):
upload a generated mp4, wait for the answer, and compare what the page shows with ``lavish predict --json`` /
``lavish ask --json``, for every task; a bad file and the limits give one line in the page and the next upload
works. Screenshots go to test-artifacts/serve/ (docs/serve.png is the AVE one)."""

from __future__ import annotations

import base64
import shutil

import numpy as np
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from serve_browser import start_chromium
from serve_helpers import ARTIFACTS, cli_json, make_clip

@pytest.fixture(scope="module")
def browser():
    d, profile = start_chromium()
    yield d
    d.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _open(browser, server, task: str) -> None:
    browser.get(server.url)
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state")
                                     == "idle")
    Select(browser.find_element(By.ID, "model")).select_by_value(server.ids[task])


def _upload(browser, path) -> str:
    """Give the file to the page's file input (as a drop does) and wait for the answer: the end state."""
    browser.find_element(By.ID, "file").send_keys(str(path))
    return _wait(browser)


def _wait(browser) -> str:
    WebDriverWait(browser, 120).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state")
                                      in ("done", "error"))
    return browser.find_element(By.TAG_NAME, "body").get_attribute("data-state")


def _message(browser) -> str:
    return browser.find_element(By.ID, "message").text


def _shot(browser, name: str) -> None:
    ARTIFACTS.joinpath("serve").mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / "serve" / f"{name}.png"
    assert browser.save_screenshot(str(path)) and path.stat().st_size > 10_000


def test_ave_labels_shown_equal_the_cli(browser, server, models):
    _open(browser, server, "ave")
    clip = models.clips["ave"]
    assert _upload(browser, clip) == "done", _message(browser)
    cli = cli_json("predict", str(clip), "--checkpoint", str(models.checkpoints["ave"]))[0]
    cells = browser.find_elements(By.CSS_SELECTOR, "#timeline .cell")
    assert [(int(c.get_attribute("data-second")), c.get_attribute("data-label")) for c in cells] == \
        [(s["second"], s["label"]) for s in cli["seconds"]]
    rows = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
            for tr in browser.find_elements(By.CSS_SELECTOR, "#seconds tbody tr")]
    assert rows == [[str(s["second"]), s["label"], f"{s['probability']:.4f}"] for s in cli["seconds"]]
    assert browser.find_element(By.ID, "player").get_attribute("src").startswith("blob:")
    assert "done in" in browser.find_element(By.ID, "status").text
    _shot(browser, "ave")


def test_bad_file_and_limits_are_one_line_in_the_page_then_a_good_file_works(browser, server, models, tmp_path):
    _open(browser, server, "ave")
    text = tmp_path / "notes.mp4"
    text.write_text("this is text, not a video\n")
    assert _upload(browser, text) == "error"
    assert _message(browser).startswith("notes.mp4: not a readable media file") and "\n" not in _message(browser)
    _shot(browser, "bad-file")
    assert _upload(browser, make_clip(tmp_path / "long.mp4", 15.0)) == "error"
    assert "longer than this server's limit of 12 s" in _message(browser)
    big = tmp_path / "big.mp4"
    big.write_bytes(np.random.default_rng(0).bytes(1_500_000))
    browser.find_element(By.ID, "file").send_keys(str(big))  # refused in the page, before any upload
    WebDriverWait(browser, 10).until(lambda d: "larger than this server's limit of 1 MB" in _message(d))
    clip = make_clip(tmp_path / "short.mp4", 3.0)
    assert _upload(browser, clip) == "done" and _message(browser) == ""
    cli = cli_json("predict", str(clip), "--checkpoint", str(models.checkpoints["ave"]))[0]
    cells = browser.find_elements(By.CSS_SELECTOR, "#timeline .cell")
    assert [c.get_attribute("data-label") for c in cells] == [s["label"] for s in cli["seconds"]] and len(cells) == 3
    assert server.uploads() == []


def test_avqa_question_answer_and_seconds_looked_at(browser, server, models):
    _open(browser, server, "avqa")
    box = browser.find_element(By.ID, "question")
    assert box.is_displayed()
    box.send_keys(models.question)
    clip = models.clips["avqa"]
    assert _upload(browser, clip) == "done", _message(browser)
    cli = cli_json("ask", str(clip), models.question, "--checkpoint", str(models.checkpoints["avqa"]))
    assert browser.find_element(By.ID, "answer").text == cli["answers"][0]["answer"]
    answers = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")][:2]
               for tr in browser.find_elements(By.CSS_SELECTOR, "#answers tbody tr")]
    assert answers == [[a["answer"], f"{a['probability']:.4f}"] for a in cli["answers"]]
    rows = browser.find_elements(By.CSS_SELECTOR, "#segments tbody tr")
    assert [float(r.get_attribute("data-time")) for r in rows] == [s["time_s"] for s in cli["segments"]]
    looked = {int(r.get_attribute("data-segment")) for r in rows if "looked" in r.get_attribute("class")}
    ranked = sorted(cli["segments"], key=lambda s: -s["visual_weight"])
    assert len(looked) == 3 and {s["segment"] for s in ranked[:3]} == looked
    _shot(browser, "avqa")
    # another question on the same clip, with the button
    box.clear()
    box.send_keys("Is the violin playing?")
    browser.find_element(By.ID, "run").click()
    assert _wait(browser) == "done"
    cli = cli_json("ask", str(clip), "Is the violin playing?", "--checkpoint", str(models.checkpoints["avqa"]))
    assert browser.find_element(By.ID, "answer").text == cli["answers"][0]["answer"]


def test_avs_masks_over_the_frames_second_by_second(browser, server, models, tmp_path):
    _open(browser, server, "avs")
    clip = models.clips["avs"]
    assert _upload(browser, clip) == "done", _message(browser)
    cli = cli_json("predict", str(clip), "--checkpoint", str(models.checkpoints["avs"]), "--out", str(tmp_path))[0]
    WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "masks").get_attribute("data-drawn") == "yes")
    figures = browser.find_elements(By.CSS_SELECTOR, "#masks figure")
    assert len(figures) == len(cli["masks"]) == 5
    assert [int(f.get_attribute("data-second")) for f in figures] == list(range(5))
    assert [float(f.get_attribute("data-coverage")) for f in figures] == cli["coverage"]
    # each canvas holds its second's tile of the CLI's contact sheet (the frame with the mask in red)
    from PIL import Image

    sheet = np.asarray(Image.open(cli["sheet"]).convert("RGB"))
    w = sheet.shape[1] // 5
    for k in range(5):
        pixels = browser.execute_script(
            "const c = document.querySelectorAll('#masks canvas')[arguments[0]];"
            "return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data);", k)
        tile = np.array(pixels, dtype=np.uint8).reshape(sheet.shape[0], w, 4)[..., :3]
        assert np.array_equal(tile, sheet[:, k * w:(k + 1) * w])
    _shot(browser, "avs")


def _drop(browser, path) -> str:
    """Drop the file on the page's drop zone (a DataTransfer holding it, as a drag from the desktop gives)."""
    payload = base64.b64encode(path.read_bytes()).decode("ascii")
    browser.execute_script("""
        const bytes = Uint8Array.from(atob(arguments[0]), (c) => c.charCodeAt(0));
        const data = new DataTransfer();
        data.items.add(new File([bytes], arguments[1], { type: "video/mp4" }));
        const zone = document.getElementById("drop");
        zone.dispatchEvent(new DragEvent("dragover", { dataTransfer: data, bubbles: true, cancelable: true }));
        zone.dispatchEvent(new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true }));
    """, payload, path.name)
    return _wait(browser)


def test_avvp_heard_and_seen_rows_of_a_dropped_video(browser, server, models):
    _open(browser, server, "avvp")
    clip = models.clips["avvp"]
    assert _drop(browser, clip) == "done", _message(browser)
    assert browser.find_element(By.CSS_SELECTOR, "#result .muted").text.startswith(clip.name)
    cli = cli_json("predict", str(clip), "--checkpoint", str(models.checkpoints["avvp"]))[0]
    for kind in ("heard", "seen"):
        cells = browser.find_elements(By.CSS_SELECTOR, f"#timeline .timeline[data-kind={kind}] .cell")
        shown = [c.get_attribute("data-labels") for c in cells]
        assert shown == ["; ".join(s[kind]) for s in cli["seconds"]]
    _shot(browser, "avvp")


def test_example_clip_runs_from_the_page(browser, server, models, examples):
    _open(browser, server, "ave")
    buttons = browser.find_elements(By.CSS_SELECTOR, "#examples button")
    assert [b.get_attribute("data-name") for b in buttons] == ["example_clip.mp4"]
    buttons[0].click()
    assert _wait(browser) == "done", _message(browser)
    cli = cli_json("predict", str(examples / "example_clip.mp4"), "--checkpoint", str(models.checkpoints["ave"]))[0]
    cells = browser.find_elements(By.CSS_SELECTOR, "#timeline .cell")
    assert [c.get_attribute("data-label") for c in cells] == [s["label"] for s in cli["seconds"]]
    assert browser.find_element(By.ID, "player").get_attribute("src").endswith("/examples/example_clip.mp4")


def test_classify_top_labels_as_bars_equal_the_cli(browser, server, models):
    _open(browser, server, "classify")
    clip = models.clips["classify"]
    assert "clip classification" in browser.find_element(By.ID, "task").text
    assert _upload(browser, clip) == "done", _message(browser)
    cli = cli_json("predict", str(clip), "--checkpoint", str(models.checkpoints["classify"]))[0]
    rows = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")[:2]]
            for tr in browser.find_elements(By.CSS_SELECTOR, "#labels tbody tr")]
    assert rows == [[t["label"], f"{t['probability']:.4f}"] for t in cli["top_k"]]
    assert browser.find_element(By.ID, "answer").text == cli["top_k"][0]["label"]
    widths = [b.size["width"] for b in browser.find_elements(By.CSS_SELECTOR, "#labels .bar")]
    assert widths == sorted(widths, reverse=True) and widths[0] > 0  # bar lengths follow the probabilities
    _shot(browser, "classify")
