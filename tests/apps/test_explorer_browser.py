"""End to end in a real headless Chromium (selenium): the explorer served on 127.0.0.1
over two tiny runs trained from real structures (CARE and SimCLR).

Needs Debian's ``chromium`` and ``chromedriver`` (``make browser`` installs them); when
they are missing the test fails, it never skips. Screenshots go to
``$PROTEIN_CARE_SCREENSHOTS`` when set, else to a temporary folder.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from apps.trajectory_explorer.data import ExplorerData
from apps.trajectory_explorer.figures import HIGHLIGHT_NAME
from apps.trajectory_explorer.server import create_app, make_server
from protein_care.plotting import png_export_available

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
CHROME_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
    "--enable-unsafe-swiftshader",  # software WebGL for the 3-D plots (local page only)
    "--window-size=1500,1900",
)
MAX_UPLOAD = 512 * 1024
TIMEOUT = 60


def _executable(path: str, name: str) -> str:
    found = path if os.access(path, os.X_OK) else shutil.which(name)
    if not found:
        pytest.fail(f"{name} not found at {path}: the browser tests need Chromium and ChromeDriver — "
                    "run `apt-get install chromium chromium-driver` (or `make browser`)", pytrace=False)
    return found


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def app_server(tiny_runs):
    """The explorer on 127.0.0.1 at a free port, served from a background thread."""
    data = ExplorerData.open(tiny_runs.runs, tiny_runs.store, max_upload_bytes=MAX_UPLOAD)
    server = make_server(create_app(data), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, name="explorer", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/", data
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


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


@pytest.fixture
def page(browser, app_server):
    """A freshly loaded page with the first trajectories drawn."""
    url, data = app_server
    browser.get(url)
    _wait(browser, lambda d: len(_traces(d, "traj-2d")) == 4, "the first trajectories")
    return browser, data


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


# --------------------------------------------------------------------------- tests


def test_page_shows_both_runs_side_by_side_with_evaluation_and_curves(page, screenshots):
    driver, data = page
    traces = _traces(driver, "traj-2d")
    assert [t["type"] for t in traces] == ["scatter"] * 4
    assert sum(t["name"] == HIGHLIGHT_NAME for t in traces) == 2
    first = data.ids[0]
    assert all(len(t["x"]) == 64 for t in traces if t["name"] != HIGHLIGHT_NAME)
    assert [t["type"] for t in _traces(driver, "traj-3d")] == ["scatter3d"] * 4
    cloud = _traces(driver, "cloud")
    assert cloud[0]["type"] == "scatter3d" and len(cloud[0]["x"]) == len(data.protein(first).coords)
    titles = driver.execute_script(
        "return Array.from(document.querySelectorAll('#traj-2d .annotation-text')).map(e => e.textContent)")
    assert any("care (care, step 3)" in t for t in titles) and any("simclr (simclr, step 3)" in t for t in titles)
    status = _text(driver, "status")
    assert first in status and "axis z" in status and "2 run(s)" in status
    evaluation = _text(driver, "evaluation")
    assert "PC1 error, linear probe" in evaluation and "Wahba error" in evaluation and "γ_f" in evaluation
    assert "rotation retrieval top-1" in evaluation and "No evaluation yet: run protein-care evaluate" in evaluation
    _wait(driver, lambda d: len(_traces(d, "curves")) >= 4, "the training curves")
    assert "Traceback" not in driver.page_source
    _shot(driver, screenshots, "01-initial")


def test_choose_a_protein_and_a_custom_axis_then_move_the_slider(page, screenshots):
    driver, data = page
    target = next(i for i in data.ids if i.startswith("1ACB"))
    _choose_protein(driver, target)
    _wait(driver, lambda d: target in _text(d, "status"), f"trajectories of {target}")
    _choose_option(driver, "axis", "custom")
    _type(driver, "custom-axis", "0 1 1")
    _wait(driver, lambda d: "axis (0, 0.707, 0.707)" in _text(d, "status"), "the custom axis")
    traces = _traces(driver, "traj-2d")
    assert len(traces) == 4 and traces[0]["name"] == f"{target} · (0, 0.707, 0.707)"
    before, cloud_before = _highlights(driver), _traces(driver, "cloud")[0]
    lines = [t for t in traces if t["name"] != HIGHLIGHT_NAME]
    assert before == [(t["x"][0], t["y"][0]) for t in lines]  # the highlight starts at 0°

    _move_slider(driver, 16)
    _wait(driver, lambda d: "(step 16 of 63)" in _text(d, "status"), "the slider at step 16")
    _wait(driver, lambda d: _highlights(d) != before, "the highlight to move")
    after = _highlights(driver)
    lines = [t for t in _traces(driver, "traj-2d") if t["name"] != HIGHLIGHT_NAME]
    np.testing.assert_allclose(after, [(t["x"][16], t["y"][16]) for t in lines])  # on every trajectory
    assert len(_highlights(driver, "traj-3d")) == 2
    cloud_after = _traces(driver, "cloud")[0]
    assert cloud_after["x"] != cloud_before["x"]  # the point cloud turned
    assert "91° about (0, 0.707, 0.707)" in driver.execute_script(
        "return document.querySelector('#cloud .gtitle').textContent")
    _shot(driver, screenshots, "02-custom-axis-rotated")

    _type(driver, "steps", "24")
    _wait(driver, lambda d: len(_traces(d, "traj-2d")[0]["x"]) == 24, "24 steps")
    _wait(driver, lambda d: "(step 6 of 23)" in _text(d, "status"), "the slider to keep its angle")


def test_uploads_real_files_and_reports_bad_ones(page, screenshots, tiny_runs, tmp_path):
    driver, data = page
    _upload(driver, tiny_runs.pdb / "pdbtbx" / "1ubq.cif.gz")
    _wait(driver, lambda d: "loaded 1ubq (uploaded, 76 CA atoms" in _text(d, "upload-message"), "the upload")
    _wait(driver, lambda d: "1ubq (uploaded" in _text(d, "status"), "the uploaded protein's trajectories")
    assert len(_traces(driver, "traj-2d")) == 4 and len(_traces(driver, "cloud")[0]["x"]) == 76
    assert "1ubq" in _text(driver, "protein")
    _shot(driver, screenshots, "03-upload")

    pdb = tiny_runs.pdb / "BM5-clean" / "1HIA_l_u.pdb"
    _upload(driver, pdb)
    _wait(driver, lambda d: "loaded 1HIA_l_u (uploaded" in _text(d, "upload-message"), "the .pdb upload")
    _wait(driver, lambda d: "1HIA_l_u (uploaded" in _text(d, "status"), "the .pdb trajectories")

    corrupt = tmp_path / "corrupt.pdb"
    corrupt.write_bytes(b"HEADER    definitely not\x00 a structure\n" + os.urandom(2000))
    _upload(driver, corrupt)
    _wait(driver, lambda d: "corrupt.pdb: not a readable structure file" in _text(d, "upload-message"),
          "the corrupt-file message")
    assert "1HIA_l_u (uploaded" in _text(driver, "status")  # the previous protein stays
    big = tmp_path / "big.pdb"
    big.write_bytes(b"REMARK\n" * (MAX_UPLOAD // 7 + 1000))
    _upload(driver, big)
    # refused in the browser, before anything is sent: the page's guard says why
    _wait(driver, lambda d: f"big.pdb: {round(big.stat().st_size / 1024)} kB is over the upload limit of 512 kB"
          in _text(d, "upload-message"), "the oversized-file message")
    assert "--max-upload-mb" in _text(driver, "upload-message")
    assert not any("big" in p.label for p in data.uploads())
    _shot(driver, screenshots, "04-bad-upload")
    assert "Traceback" not in driver.page_source

    # still responsive: another axis is drawn after the errors
    _choose_option(driver, "axis", "x")
    _wait(driver, lambda d: "axis x" in _text(d, "status") and len(_traces(d, "traj-2d")) == 4, "the x axis")


def test_runs_can_be_dropped_and_a_loading_indicator_shows_while_computing(page, app_server):
    driver, data = page
    _choose_option(driver, "runs", "simclr (simclr, step 3)")
    _wait(driver, lambda d: len(_traces(d, "traj-2d")) == 2 and "1 run(s)" in _text(d, "status"), "one run")
    assert "simclr" not in _text(driver, "evaluation")

    real = data.trajectory

    def slow(*args, **kwargs):
        time.sleep(2.0)
        return real(*args, **kwargs)

    data.trajectory = slow  # the server thread reads the same service object
    try:
        _type(driver, "steps", "40")
        _wait(driver, lambda d: d.execute_script(
            "var s = document.querySelector('.dash-spinner'); return !!s && s.offsetParent !== null"),
            "the loading indicator", timeout=10)
        _wait(driver, lambda d: len(_traces(d, "traj-2d")[0]["x"]) == 40, "40 steps")
    finally:
        del data.trajectory
    _wait(driver, lambda d: not d.execute_script("return !!document.querySelector('.dash-spinner')"),
          "the indicator to go away", timeout=10)


def test_export_html_downloads_and_png_explains(page, downloads, screenshots):
    driver, _ = page
    from selenium.webdriver.common.by import By

    for old in downloads.iterdir():
        old.unlink()
    _choose_option(driver, "export-which", "3-D trajectories")
    driver.find_element(By.ID, "export-html").click()
    _wait(driver, lambda d: "exported" in _text(d, "export-message"), "the export message")
    path = _wait(driver, lambda d: next((p for p in downloads.iterdir() if p.suffix == ".html"), None),
                 "the HTML download")
    _wait(driver, lambda d: not list(downloads.glob("*.crdownload")), "the download to finish")
    html = path.read_text(encoding="utf-8")
    assert path.name.endswith("-trajectories-3d.html") and len(html) > 1_000_000 and "scatter3d" in html
    assert "<script src=\"http" not in html  # self-contained

    driver.find_element(By.ID, "export-png").click()
    if png_export_available():
        _wait(driver, lambda d: any(p.suffix == ".png" for p in downloads.iterdir()), "the PNG download")
    else:
        _wait(driver, lambda d: "kaleido" in _text(d, "export-message"), "the PNG message")
        assert "PNG export is not available here" in _text(driver, "export-message")
        _shot(driver, screenshots, "05-export")
