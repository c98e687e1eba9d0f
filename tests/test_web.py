"""The browser page (web/) in headless Chromium: it loads the exported model, samples, interpolates,
draws notes, and its greedy tokens equal PyTorch's for the same z.

Skipped only where Chromium is missing (test.sh installs Debian's chromium where it can). The page
is served from a copy of web/ holding the committed reference model's export, so a user's own
web/model/ is never touched; onnxruntime-web comes from web/vendor/ (scripts/vendor_web.sh).
"""

import functools
import http.server
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

from conftest import scale_windows

from musicvae_lib import export, inference, latent, prior, training
from musicvae_lib.representation import tokens_to_notes

REPOSITORY = Path(__file__).resolve().parent.parent
MODEL = REPOSITORY / "results" / "default" / "training" / "model.pt"
CHROMIUM = shutil.which("chromium")

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is missing: apt-get install -y chromium (test.sh does)")


@pytest.fixture(scope="module")
def model():
    return training.load_model(MODEL, device="cpu")


@pytest.fixture(scope="module")
def site(tmp_path_factory, model) -> str:
    """URL of a local server for a copy of web/ with the reference model exported into it."""
    subprocess.run(["bash", str(REPOSITORY / "scripts" / "vendor_web.sh")], check=True)
    root = tmp_path_factory.mktemp("site")
    for name in ("index.html", "musicvae.js"):
        shutil.copy(REPOSITORY / "web" / name, root / name)
    shutil.copytree(REPOSITORY / "web" / "vendor", root / "vendor")
    export.export(model, root / "model", study_prior=prior.StudyPrior("mixture", narrow_mixture(model)))
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    server.shutdown()


def narrow_mixture(model) -> prior.LatentMixture:
    """Two narrow Gaussians (std 0.01) at the mu of two scales: a page sampling from it draws z next to one of them."""
    mu, _ = inference.encode_windows(model, scale_windows(2, seed=0))
    return prior.LatentMixture(np.array([0.5, 0.5]), mu.astype(np.float64), np.full(mu.shape, 1e-4))


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """``python -m http.server``'s handler (its MIME types: .mjs and .wasm are known to Python's mimetypes), without the log."""

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def page(site):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(site)
        page.wait_for_function("window.musicvae.ready || document.getElementById('status').textContent.startsWith('error')", timeout=60_000)
        assert not errors and page.evaluate("window.musicvae.ready"), (errors, page.inner_text("#status"))
        yield page
        browser.close()


def click_and_wait(page, button: str, result: str) -> None:
    page.evaluate(f"window.musicvae.{result} = null")
    page.click(f"#{button}")
    page.wait_for_function(f"window.musicvae.{result} !== null", timeout=60_000)


def test_greedy_sample_equals_pytorch_and_is_drawn(page, model):
    page.eval_on_selector("#temperature", "element => { element.value = '0'; }")
    click_and_wait(page, "sample", "lastTokens")
    z = np.array(page.evaluate("window.musicvae.lastZ"), dtype=np.float32)
    tokens = np.array(page.evaluate("window.musicvae.lastTokens"))
    assert z.shape == (model.config.z_size,) and tokens.shape == (model.config.steps,)
    np.testing.assert_array_equal(tokens, inference.decode_latents(model, z[None])[0])
    notes = tokens_to_notes(tokens.astype(np.uint8))
    assert len(notes) > 0
    assert page.get_attribute("#roll", "data-notes") == str(len(notes))


def test_the_page_draws_z_from_the_exported_prior(page, model):
    assert page.inner_text("#prior").startswith("a 2-component Gaussian mixture")
    means = narrow_mixture(model).means
    for _ in range(3):
        click_and_wait(page, "sample", "lastTokens")
        z = np.array(page.evaluate("window.musicvae.lastZ"))
        assert np.abs(z - means).max(axis=1).min() < 0.06  # within 6 standard deviations of a component's mean


def test_same_seed_same_sample(page):
    page.eval_on_selector("#temperature", "element => { element.value = '1'; }")
    tokens = []
    for _ in range(2):
        page.fill("#seed", "7")
        page.dispatch_event("#seed", "change")
        click_and_wait(page, "sample", "lastTokens")
        tokens.append(page.evaluate("window.musicvae.lastTokens"))
    assert tokens[0] == tokens[1]
    click_and_wait(page, "sample", "lastTokens")
    assert page.evaluate("window.musicvae.lastTokens") != tokens[0]  # the next draw of the same generator


def test_interpolation_path_equals_pytorch(page, model):
    page.eval_on_selector("#temperature", "element => { element.value = '0'; }")
    zs = []
    for _ in range(2):
        click_and_wait(page, "sample", "lastTokens")
        zs.append(np.array(page.evaluate("window.musicvae.lastZ"), dtype=np.float32))
    click_and_wait(page, "interpolate", "pathTokens")
    path = np.array(page.evaluate("window.musicvae.pathTokens"))
    expected = inference.decode_latents(model, np.stack([latent.slerp(*zs, alpha) for alpha in latent.alphas(11)]))
    np.testing.assert_array_equal(path, expected)
    drawn = page.eval_on_selector_all("#path canvas", "canvases => canvases.map(c => Number(c.dataset.notes))")
    assert drawn == [len(tokens_to_notes(tokens)) for tokens in expected]
