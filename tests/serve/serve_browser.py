"""A headless Chromium driven by Selenium (Debian's ``chromium`` and ``chromium-driver``), for the serve tests and
for the README's screenshot::

    python tests/serve/serve_browser.py http://127.0.0.1:7860/ my_video.mp4 docs/serve.png

opens the page, uploads the video to the first model, waits for the answer and saves the screenshot.
"""

from __future__ import annotations

import shutil
import sys
import tempfile

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

#: what Chromium needs to start as root in a container without network (it stalls otherwise)
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1280,760")


def start_chromium():
    """(driver, profile folder): a fresh Chromium with its own profile (the caller quits it and removes the folder)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    assert chromium and driver, "Chromium and chromedriver are needed: apt-get install -y chromium chromium-driver"
    profile = tempfile.mkdtemp(prefix="lavish-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    d = webdriver.Chrome(service=Service(driver), options=options)
    d.set_page_load_timeout(60)
    return d, profile


def screenshot(url: str, video: str, out: str) -> str:
    d, profile = start_chromium()
    try:
        d.get(url)
        state = lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state")  # noqa: E731
        WebDriverWait(d, 30).until(lambda d: state(d) == "idle")
        d.find_element(By.ID, "file").send_keys(video)
        WebDriverWait(d, 300).until(lambda d: state(d) in ("done", "error"))
        d.execute_script("document.getElementById('player').currentTime = 4.5;")
        WebDriverWait(d, 30).until(lambda d: d.execute_script(
            "const p = document.getElementById('player'); return !p.seeking && p.readyState >= 2;"))
        d.save_screenshot(out)
        return state(d)
    finally:
        d.quit()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    print(screenshot(*sys.argv[1:4]))
