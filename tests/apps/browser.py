"""Shared by the browser tests: a headless Chromium (selenium) and helpers that read
what plotly drew and drive the page's controls.

Needs Debian's ``chromium`` and ``chromedriver`` (``make browser`` installs them); when
they are missing the test fails, it never skips. Screenshots go to
``$PROTEIN_CARE_SCREENSHOTS`` when set, else to a temporary folder.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from apps.trajectory_explorer.figures import HIGHLIGHT_NAME

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
CHROME_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
    "--enable-unsafe-swiftshader",  # software WebGL for the 3-D plots (local page only)
    "--window-size=1500,1900",
)
TIMEOUT = 60


def _executable(path: str, name: str) -> str:
    found = path if os.access(path, os.X_OK) else shutil.which(name)
    if not found:
        pytest.fail(f"{name} not found at {path}: the browser tests need Chromium and ChromeDriver — "
                    "run `apt-get install chromium chromium-driver` (or `make browser`)", pytrace=False)
    return found


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("PROTEIN_CARE_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def downloads(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(tmp_path_factory, downloads):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = _executable(CHROMIUM, "chromium")
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.add_experimental_option("prefs", {
        "download.default_directory": str(downloads), "download.prompt_for_download": False,
    })
    driver = webdriver.Chrome(service=Service(_executable(CHROMEDRIVER, "chromedriver")), options=options)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    yield driver
    driver.quit()


# --------------------------------------------------------------------------- helpers


def _wait(driver, condition, what: str, timeout: float = TIMEOUT):
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    def safe(d):
        try:
            return condition(d)
        except (StaleElementReferenceException, WebDriverException):
            return False

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.2).until(safe)
    except Exception:  # noqa: BLE001 - say what did not happen, with the page's state
        status = driver.execute_script("var s = document.getElementById('status'); return s && s.innerText")
        pytest.fail(f"timed out waiting for {what}; status line: {status!r}", pytrace=False)


def _array(value) -> list:
    """A trace coordinate as a list: plotly sends numpy arrays as typed-array specs
    ``{"dtype": "f8", "bdata": base64}``."""
    if isinstance(value, dict) and "bdata" in value:
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"])).tolist()
    return list(value or [])


def _traces(driver, graph_id: str) -> list[dict]:
    """The traces plotly drew in a ``dcc.Graph`` (name, type and coordinates)."""
    raw = driver.execute_script(
        """var g = document.querySelector('#' + arguments[0] + ' .js-plotly-plot');
        if (!g || !g.data) { return '[]'; }
        return JSON.stringify(g.data.map(function (t) {
            return {name: t.name, type: t.type || 'scatter', x: t.x, y: t.y, z: t.z}; }));""",
        graph_id,
    )
    return [{**t, "x": _array(t.get("x")), "y": _array(t.get("y")), "z": _array(t.get("z"))}
            for t in json.loads(raw or "[]")]


def _text(driver, element_id: str) -> str:
    return driver.execute_script("var e = document.getElementById(arguments[0]); return e ? e.innerText : ''",
                                 element_id)


def _highlights(driver, graph_id="traj-2d") -> list[tuple]:
    return [(t["x"][0], t["y"][0]) for t in _traces(driver, graph_id) if t["name"] == HIGHLIGHT_NAME]


def _choose_option(driver, group_id: str, label: str):
    from selenium.webdriver.common.by import By

    for option in driver.find_elements(By.CSS_SELECTOR, f"#{group_id} label"):
        if option.text.strip() == label:
            option.click()
            return
    pytest.fail(f"no option {label!r} in #{group_id}")


def _choose_protein(driver, protein_id: str):
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, "protein").click()
    search = _wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, ".dash-dropdown-content .dash-dropdown-search"),
                   "the protein search box")
    search.send_keys(protein_id[:6])
    option = _wait(driver, lambda d: next((o for o in d.find_elements(
        By.CSS_SELECTOR, ".dash-dropdown-content .dash-dropdown-option") if o.text.strip() == protein_id), None),
        f"option {protein_id}")
    option.click()


def _type(driver, element_id: str, text: str):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = driver.find_element(By.ID, element_id)
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.DELETE)
    box.send_keys(text, Keys.ENTER)


def _move_slider(driver, steps: int):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    thumb = driver.find_element(By.CSS_SELECTOR, "#angle [role=slider]")
    driver.execute_script("arguments[0].focus()", thumb)
    thumb.send_keys(*([Keys.ARROW_RIGHT] * steps))


def _upload(driver, path: Path):
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, "#upload input[type=file]").send_keys(str(path))


def _shot(driver, folder: Path, name: str) -> Path:
    driver.execute_script("window.scrollTo(0, 0)")
    time.sleep(0.5)  # let plotly finish drawing
    path = folder / f"{name}.png"
    assert driver.save_screenshot(str(path)), f"could not save {path}"
    return path
