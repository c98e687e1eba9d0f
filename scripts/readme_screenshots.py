"""Screenshots of the browser page and of the explorer for the README (docs/images/), in headless chromium.

    .venv/bin/python -m musicvae_lib.export results/default --out web/model
    bash scripts/vendor_web.sh
    .venv/bin/python scripts/readme_screenshots.py   # --page-only or --explorer-only: one of the two

The page is served from web/ (its vendor/ and model/ made by the commands above); the explorer is
notebook 08 on the committed reference run, opened and run in a JupyterLab started for the purpose.
"""

import functools
import http.server
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

from musicvae_lib import explore

REPOSITORY = Path(__file__).resolve().parent.parent
IMAGES = REPOSITORY / "docs" / "images"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """``python -m http.server``'s handler (its MIME types: .mjs and .wasm are known to Python's mimetypes),
    without the log."""

    def log_message(self, *args) -> None:
        pass


def page_screenshot(browser) -> None:
    handler = functools.partial(QuietHandler, directory=str(REPOSITORY / "web"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    page = browser.new_page(viewport={"width": 980, "height": 900})
    page.goto(f"http://127.0.0.1:{server.server_address[1]}/index.html")
    page.wait_for_function(
        "window.musicvae.ready || document.getElementById('status').classList.contains('error')", timeout=60_000
    )
    if not page.evaluate("window.musicvae.ready"):
        raise SystemExit(f"the page did not load: {page.inner_text('#status')}")
    # the README shows seed 3's first two samples at temperature 0.5 and the path between them
    page.click("#seed")
    page.keyboard.press("Control+A")
    page.keyboard.type("3")
    for button in ("sample", "sample", "interpolate"):
        page.click(f"#{button}")
        page.wait_for_function("!window.musicvae.busy", timeout=60_000)
    page.screenshot(path=IMAGES / "web_page.png", full_page=True)
    server.shutdown()


def explorer_screenshot(browser) -> None:
    folder = Path(tempfile.mkdtemp())
    # the copy the README has users open, set to the committed run (python -m musicvae_lib.explore)
    copy = explore.prepare_notebook(REPOSITORY / "results" / "default", out=folder / "08_explore.ipynb")
    notebook = json.loads(copy.read_text())
    # the README shows the explorer moved: halfway to melody B, denser, at a low temperature
    notebook["cells"].append(
        {
            "cell_type": "code",
            "execution_count": None,
            "metadata": {},
            "outputs": [],
            "source": [
                "panel.number_a.value, panel.number_b.value = '12', 40\n",
                "panel.alpha.value, panel.ks['note_density'].value, panel.temperature.value = 0.3, 1.5, 0.3\n",
                "print('screenshot state set')",
            ],
        }
    )
    (folder / "08_explore.ipynb").write_text(json.dumps(notebook))
    port = free_port()
    lab = subprocess.Popen(
        [
            str(REPOSITORY / ".venv" / "bin" / "jupyter"),
            "lab",
            "--no-browser",
            f"--port={port}",
            "--IdentityProvider.token=",
            "--ServerApp.password=",
            f"--ServerApp.root_dir={folder}",
            "--allow-root",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(60):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/lab", timeout=1)
                break
            except OSError:
                time.sleep(1)
        page = browser.new_page(viewport={"width": 1300, "height": 1500})
        page.goto(f"http://127.0.0.1:{port}/lab/tree/08_explore.ipynb")
        page.wait_for_selector(".jp-Notebook", timeout=60_000)
        time.sleep(8)  # the kernel starts
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        select_kernel = page.locator(".jp-Dialog button:has-text('Select')")
        try:
            select_kernel.wait_for(timeout=15_000)  # JupyterLab asks for a kernel the first time
            select_kernel.click()
        except Exception:
            pass
        page.wait_for_selector(".widget-vbox audio", timeout=120_000)
        page.wait_for_selector(".jp-OutputArea-output:has-text('screenshot state set')", timeout=180_000)
        no_news = page.get_by_role("button", name="No", exact=True)
        if no_news.count():
            no_news.first.click(timeout=5_000)  # the "Jupyter news?" notification would cover the table
        time.sleep(2)
        page.locator(".widget-vbox").first.scroll_into_view_if_needed()
        page.locator(".jp-OutputArea-output:has(.widget-vbox)").first.screenshot(path=IMAGES / "explorer.png")
    finally:
        lab.terminate()
        lab.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)


def main() -> int:
    IMAGES.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        if "--explorer-only" not in sys.argv:
            page_screenshot(browser)
        if "--page-only" not in sys.argv:
            explorer_screenshot(browser)
        browser.close()
    print(f"wrote the screenshots in {IMAGES}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
