"""End to end in a real headless Chromium (selenium): the explorer served on 127.0.0.1
over two tiny runs trained from real structures (CARE and SimCLR).

The browser and its helpers are in :mod:`tests.apps.browser` (its fixtures come
through ``conftest.py``).
"""

from __future__ import annotations

import gzip
import math
import os
import threading
import time

import numpy as np
import plotly.io as pio
import pytest

from apps.trajectory_explorer import views
from apps.trajectory_explorer.data import ExplorerData
from apps.trajectory_explorer.figures import HIGHLIGHT_NAME
from apps.trajectory_explorer.server import REQUEST_OVERHEAD_BYTES, create_app, make_server
from protein_care.plotting import png_export_available
from tests.apps.browser import (
    _choose_option, _choose_protein, _highlights, _move_slider, _shot, _text, _traces, _type, _upload, _wait,
)

pytestmark = pytest.mark.slow

MAX_UPLOAD = 512 * 1024
MAX_POINTS = 50_000


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def app_server(tiny_runs):
    """The explorer on 127.0.0.1 at a free port, served from a background thread."""
    data = ExplorerData.open(tiny_runs.runs, tiny_runs.store, max_upload_bytes=MAX_UPLOAD, max_points=MAX_POINTS)
    server = make_server(create_app(data), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, name="explorer", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/", data
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.fixture
def page(browser, app_server):
    """A freshly loaded page with the first trajectories drawn."""
    url, data = app_server
    browser.get(url)
    _wait(browser, lambda d: len(_traces(d, "traj-2d")) == 4, "the first trajectories")
    return browser, data


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


def _lattice_pdb_gz(n: int) -> bytes:
    """A valid, very compressible PDB of ``n`` CA atoms on a cubic lattice (9,999
    residues per chain)."""
    side = math.ceil(n ** (1 / 3))
    lines = [f"ATOM  {i % 99999 + 1:5d}  CA  ALA {'ABCDEFGH'[i // 9999]}{i % 9999 + 1:4d}    "
             f"{i % side * 3.8:8.3f}{i // side % side * 3.8:8.3f}{i // side // side * 3.8:8.3f}  1.00  0.00           C"
             for i in range(n)]
    return gzip.compress(("\n".join(lines) + "\nEND\n").encode())


def _export(driver, which: str, downloads):
    from selenium.webdriver.common.by import By

    for old in downloads.iterdir():
        old.unlink()
    _choose_option(driver, "export-which", which)
    driver.find_element(By.ID, "export-html").click()


def test_export_of_a_large_valid_upload_downloads(page, downloads, tmp_path):
    """The page's figures of a 35,000-atom upload are larger than any request the server
    accepts: the export sends the page's choices, and the server rebuilds the figure
    (sending the figures back was refused with HTTP 413 and no message)."""
    driver, data = page
    big = tmp_path / "lattice.pdb.gz"
    # 35,000, not 40,000: the lattice unpacks to 13 times its gzip size (real files: about
    # 4), and its 2.8 MB of text must stay within the 6 × 512 kB the server unpacks
    big.write_bytes(_lattice_pdb_gz(35_000))
    assert big.stat().st_size < MAX_UPLOAD
    _upload(driver, big)
    _wait(driver, lambda d: "loaded lattice (uploaded, 35000 CA atoms" in _text(d, "upload-message"), "the upload",
          timeout=120)
    _wait(driver, lambda d: "lattice (uploaded" in _text(d, "status"), "the upload's figures", timeout=120)
    session = driver.execute_script("return JSON.parse(sessionStorage.getItem('session'))")
    (key,) = [p.key for p in data.uploads(session) if p.label.startswith("lattice")]
    v = views.render_views(data, ["0", "1"], key, "z", "1 1 0", 64, 0, session=session)
    sizes = [len(pio.to_json(f)) for f in (v.traj2d, v.traj3d, v.cloud)]
    assert sum(sizes) > math.ceil(MAX_UPLOAD * 4 / 3) + REQUEST_OVERHEAD_BYTES  # what the old request carried
    _export(driver, "point cloud", downloads)
    _wait(driver, lambda d: "exported lattice-point-cloud.html" in _text(d, "export-message"), "the export message",
          timeout=120)
    path = _wait(driver, lambda d: next((p for p in downloads.iterdir() if p.suffix == ".html"), None), "the download")
    _wait(driver, lambda d: not list(downloads.glob("*.crdownload")), "the download to finish")
    assert path.name == "lattice-point-cloud.html" and path.stat().st_size > sizes[2]


def test_a_failed_export_says_so_in_the_page(page, downloads, monkeypatch):
    driver, _ = page

    def broken(*_args, **_kwargs):
        raise RuntimeError("the disk is full")

    monkeypatch.setattr(views, "export_view", broken)  # the server answers HTTP 500
    _export(driver, "2-D trajectories", downloads)
    _wait(driver, lambda d: "export failed: the server answered HTTP 500" in _text(d, "export-message"),
          "the export failure message")
    assert not list(downloads.iterdir())


def _protein_options(driver) -> list[str]:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver.find_element(By.ID, "protein").click()
    options = _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".dash-dropdown-content .dash-dropdown-option"),
                    "the protein options")
    texts = [o.text.strip() for o in options]
    driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
    return texts


def test_uploads_are_private_to_the_browser_tab(page, tiny_runs):
    driver, data = page
    url = driver.current_url
    _upload(driver, tiny_runs.pdb / "pdbtbx" / "1ubq.cif.gz")
    _wait(driver, lambda d: "loaded 1ubq" in _text(d, "upload-message"), "the upload")
    mine = driver.execute_script("return JSON.parse(sessionStorage.getItem('session'))")
    driver.refresh()  # a reload keeps the tab's uploads
    _wait(driver, lambda d: len(_traces(d, "traj-2d")) == 4, "the reloaded page")
    assert driver.execute_script("return JSON.parse(sessionStorage.getItem('session'))") == mine
    _wait(driver, lambda d: any("1ubq (uploaded" in t for t in _protein_options(d)), "the upload listed after reload")
    first = driver.current_window_handle
    driver.switch_to.new_window("tab")
    try:
        driver.get(url)
        _wait(driver, lambda d: len(_traces(d, "traj-2d")) == 4, "the page in another tab")
        theirs = driver.execute_script("return JSON.parse(sessionStorage.getItem('session'))")
        assert theirs and theirs != mine
        options = _protein_options(driver)
        assert options and not any("uploaded" in t for t in options)
    finally:
        driver.close()
        driver.switch_to.window(first)

