"""The browser page (web/) in headless Chromium, used as a musician uses it: keys typed into the
fields, buttons clicked (fast, too), melodies played 60 times and stopped, MIDI downloaded, the
window narrowed to 400 px. Its greedy tokens equal PyTorch's for the same z, and any console
error, uncaught exception or failed request (a favicon's 404 too) fails the test that caused it.

Skipped only where Chromium is missing (test.sh installs Debian's chromium where it can). The page
is served from a copy of web/ holding the committed reference model's export, so a user's own
web/model/ is never touched; onnxruntime-web comes from web/vendor/ (scripts/vendor_web.sh).
"""

import functools
import http.server
import json
import shutil
import subprocess
import threading
from pathlib import Path

import mido
import numpy as np
import pretty_midi
import pytest
from conftest import random_windows, scale_windows

from musicvae_lib import export, inference, latent, prior, training
from musicvae_lib.representation import midi_to_tokens, tokens_to_notes

REPOSITORY = Path(__file__).resolve().parent.parent
MODEL = REPOSITORY / "results" / "default" / "training" / "model.pt"
CHROMIUM = shutil.which("chromium")
SLIDER_ATTRIBUTE = "note_density"  # the one attribute vector of the test export

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is missing: apt-get install -y chromium (test.sh does)"
)

# every AudioContext the page makes, counted from outside the page (before the page's own scripts)
COUNT_AUDIO_CONTEXTS = """
window.__audioContexts = [];
const PageAudioContext = window.AudioContext;
window.AudioContext = class extends PageAudioContext {
  constructor(...options) { super(...options); window.__audioContexts.push(this); }
};
"""


@pytest.fixture(scope="module")
def model():
    return training.load_model(MODEL, device="cpu")


def copy_page(root: Path, vendor: bool = True) -> Path:
    """web/'s page files (and its vendor/ unless ``vendor`` is False) copied to ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    for path in [*(REPOSITORY / "web").glob("*.html"), *(REPOSITORY / "web").glob("*.js")]:
        shutil.copy(path, root / path.name)
    if vendor:
        shutil.copytree(REPOSITORY / "web" / "vendor", root / "vendor")
    return root


def serve(root: Path) -> http.server.ThreadingHTTPServer:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def url(server: http.server.ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/index.html"


@pytest.fixture(scope="module")
def site(tmp_path_factory, model):
    """Root and URL of a local server for a copy of web/ with the reference model exported into it."""
    subprocess.run(["bash", str(REPOSITORY / "scripts" / "vendor_web.sh")], check=True)
    root = copy_page(tmp_path_factory.mktemp("site"))
    export.export(
        model,
        root / "model",
        study_prior=prior.StudyPrior("mixture", narrow_mixture(model)),
        vectors={SLIDER_ATTRIBUTE: slider_vector(model)},
    )
    server = serve(root)
    yield root, url(server)
    server.shutdown()


def narrow_mixture(model) -> prior.LatentMixture:
    """Two narrow Gaussians (std 0.01) at the mu of two scales: a page sampling from it draws z next to one of them."""
    mu, _ = inference.encode_windows(model, scale_windows(2, seed=0))
    return prior.LatentMixture(np.array([0.5, 0.5]), mu.astype(np.float64), np.full(mu.shape, 1e-4))


BLEND_KNOBS = prior.BlendKnobs(1, 0.5, 0.01)  # standard deviations a hundredth of the posterior's: narrow


def narrow_blend(model) -> prior.NeighbourBlend:
    """A neighbour blend of 300 narrow components over the codes of 300 random melodies: the page's prior.bin
    holds all of them, as float32."""
    mu, sigma = inference.encode_windows(model, random_windows(300, seed=0))
    return prior.neighbour_blend(mu, sigma, BLEND_KNOBS, pairs=300, seed=0)


@pytest.fixture(scope="module")
def blend_site(tmp_path_factory, model):
    """Root and URL of a copy of web/ with the reference model exported with the neighbour blend ``narrow_blend``."""
    subprocess.run(["bash", str(REPOSITORY / "scripts" / "vendor_web.sh")], check=True)
    root = copy_page(tmp_path_factory.mktemp("blend_site"))
    blend = narrow_blend(model)
    study_prior = prior.StudyPrior("neighbours", prior.standard_normal(model.config.z_size), 1.0, blend)
    export.export(model, root / "model", study_prior=study_prior)
    server = serve(root)
    yield root, url(server), study_prior
    server.shutdown()


def slider_vector(model) -> np.ndarray:
    """A fixed direction of z (seeded), long enough for k = 1.5 to change the melody."""
    return np.random.default_rng(5).standard_normal(model.config.z_size) * 0.5


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """``python -m http.server``'s handler (its MIME types: .mjs and .wasm are known to Python's mimetypes),
    without the log."""

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


def open_page(browser, address: str, problems: list, width: int = 1000):
    """A new page at ``address``; console errors, uncaught exceptions and failed requests go to ``problems``."""
    page = browser.new_page(viewport={"width": width, "height": 900}, accept_downloads=True)
    page.add_init_script(COUNT_AUDIO_CONTEXTS)
    page.on("console", lambda message: message.type == "error" and problems.append(f"console: {message.text}"))
    page.on("pageerror", lambda error: problems.append(f"exception: {error}"))
    page.on(
        "response",
        lambda response: response.status >= 400 and problems.append(f"HTTP {response.status}: {response.url}"),
    )
    page.on("requestfailed", lambda request: problems.append(f"request failed: {request.url}"))
    page.goto(address)
    page.wait_for_function(
        "window.musicvae.ready || document.getElementById('status').classList.contains('error')", timeout=60_000
    )
    return page


@pytest.fixture
def page(browser, site):
    """The page, loaded fresh; the test fails on any console error, exception or failed request."""
    problems = []
    page = open_page(browser, site[1], problems)
    assert page.evaluate("window.musicvae.ready"), page.inner_text("#status")
    yield page
    page.close()
    assert not problems, problems


def type_seed(page, seed: str) -> None:
    """Select the seed field's text and type ``seed`` over it, key by key, as a user does ("": delete it)."""
    page.click("#seed")
    page.keyboard.press("Control+A")
    page.keyboard.type(seed) if seed else page.keyboard.press("Backspace")


def set_temperature(page, temperature: float) -> None:
    """Move the temperature slider with the keyboard: Home (0), then one arrow per 0.05."""
    page.focus("#temperature")
    page.keyboard.press("Home")
    for _ in range(round(temperature / 0.05)):
        page.keyboard.press("ArrowRight")
    assert float(page.input_value("#temperature")) == pytest.approx(temperature)


def click_and_wait(page, button: str) -> None:
    """Click ``button`` and wait until every decode it started has ended."""
    page.click(f"#{button}")
    page.wait_for_function("!window.musicvae.busy", timeout=60_000)


def sample(page) -> list[int]:
    click_and_wait(page, "sample")
    return page.evaluate("window.musicvae.lastTokens")


def test_greedy_sample_equals_pytorch_and_is_drawn_and_engraved(page, model):
    set_temperature(page, 0)
    tokens = np.array(sample(page))
    z = np.array(page.evaluate("window.musicvae.lastZ"), dtype=np.float32)
    assert z.shape == (model.config.z_size,) and tokens.shape == (model.config.steps,)
    np.testing.assert_array_equal(tokens, inference.decode_latents(model, z[None])[0])
    notes = tokens_to_notes(tokens.astype(np.uint8))
    assert len(notes) > 0
    assert page.get_attribute("#roll", "data-notes") == str(len(notes))
    assert page.get_attribute("#notation svg.notation", "data-notes") == str(len(notes))
    assert page.locator("#notation svg .notehead").count() >= len(notes)  # a tied note has a head per piece


def test_the_page_draws_z_from_the_exported_prior_and_says_so_in_a_sentence(page, model):
    assert page.inner_text("#prior").startswith("a 2-component Gaussian mixture")
    assert "decoded from a point z drawn from the run's prior, a 2-component Gaussian mixture" in page.inner_text(
        "#intro"
    )
    means = narrow_mixture(model).means
    for _ in range(3):
        sample(page)
        z = np.array(page.evaluate("window.musicvae.lastZ"))
        assert np.abs(z - means).max(axis=1).min() < 0.06  # within 6 standard deviations of a component's mean


def test_same_seed_same_sample(page):
    set_temperature(page, 1)
    tokens = []
    for _ in range(2):
        type_seed(page, "7")
        tokens.append(sample(page))
    assert tokens[0] == tokens[1]
    assert sample(page) != tokens[0]  # the next draw of the same generator


def test_typing_the_same_seed_again_restarts_its_sequence(page):
    set_temperature(page, 1)
    type_seed(page, "7")
    first = [sample(page) for _ in range(3)]
    type_seed(page, "7")  # the field already holds 7: no change event, but the user typed it
    page.keyboard.press("Enter")  # Enter in the seed field samples
    page.wait_for_function("!window.musicvae.busy", timeout=60_000)
    assert [page.evaluate("window.musicvae.lastTokens"), sample(page), sample(page)] == first
    type_seed(page, "71")
    assert sample(page) != first[0]


def test_fast_clicks_give_what_slow_clicks_give(page):
    set_temperature(page, 1)
    type_seed(page, "3")
    slow = [sample(page) for _ in range(4)]
    type_seed(page, "3")
    box = page.locator("#sample").bounding_box()
    history_before = len(page.evaluate("window.musicvae.history"))
    for _ in range(12):  # raw mouse clicks, no waiting for the button to be enabled again
        page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_function("!window.musicvae.busy", timeout=60_000)
    fast = page.evaluate("window.musicvae.history")[history_before:]
    assert fast, "no sample came from 12 clicks"
    for record in fast:
        assert record["seed"] == 3
        if record["number"] <= len(slow):
            assert record["tokens"] == slow[record["number"] - 1], record["number"]
    assert [record["number"] for record in fast] == list(range(1, len(fast) + 1))


def test_interpolation_path_equals_pytorch(page, model):
    set_temperature(page, 0)
    zs = []
    for _ in range(2):
        sample(page)
        zs.append(np.array(page.evaluate("window.musicvae.lastZ"), dtype=np.float32))
    click_and_wait(page, "interpolate")
    path = np.array(page.evaluate("window.musicvae.pathTokens"))
    expected = inference.decode_latents(model, np.stack([latent.slerp(*zs, alpha) for alpha in latent.alphas(11)]))
    np.testing.assert_array_equal(path, expected)
    drawn = page.eval_on_selector_all("#path canvas", "canvases => canvases.map(c => Number(c.dataset.notes))")
    assert drawn == [len(tokens_to_notes(tokens)) for tokens in expected]


def test_interpolate_waits_for_two_samples_and_survives_a_new_seed(page):
    assert page.is_disabled("#interpolate")
    sample(page)
    assert page.is_disabled("#interpolate")
    sample(page)
    type_seed(page, "12")  # a new seed: the two samples shown are still A and B
    assert page.is_enabled("#interpolate")
    click_and_wait(page, "interpolate")
    assert len(page.evaluate("window.musicvae.pathTokens")) == 11
    type_seed(page, "")  # no seed: nothing to sample from
    assert page.is_disabled("#sample")
    assert "seed" in page.inner_text("#status")


def test_at_a_temperature_above_0_the_interpolation_ends_are_the_samples_shown(page):
    set_temperature(page, 1)
    a, b = sample(page), sample(page)
    click_and_wait(page, "interpolate")
    path = page.evaluate("window.musicvae.pathTokens")
    assert path[0] == a and path[-1] == b


def test_sixty_plays_use_one_audio_context_and_stop_silences_it(page):
    sample(page)
    sample(page)
    click_and_wait(page, "interpolate")
    for _ in range(60):
        page.click("#play")
    page.click("#play-path")
    assert page.evaluate("window.__audioContexts.length") == 1
    assert page.evaluate("window.__audioContexts[0].state") == "running"
    assert page.evaluate("window.musicvae.playing") and page.is_enabled("#stop")
    listen = """async () => {
      const output = window.musicvae.audioOutput, analyser = output.context.createAnalyser();
      output.connect(analyser);
      const samples = new Float32Array(analyser.fftSize);
      let loudest = 0;
      for (let k = 0; k < 20; k++) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        analyser.getFloatTimeDomainData(samples);
        loudest = Math.max(loudest, ...samples.map(Math.abs));
      }
      output.disconnect(analyser);
      return loudest;
    }"""
    assert page.evaluate(listen) > 0.01  # the 61st play sounds
    page.click("#stop")
    assert not page.evaluate("window.musicvae.playing") and page.is_disabled("#stop")
    assert page.evaluate(listen) == 0


def downloaded_midi(page, button: str, tmp_path: Path) -> pretty_midi.PrettyMIDI:
    with page.expect_download() as download:
        page.click(f"#{button}")
    path = tmp_path / download.value.suggested_filename
    download.value.save_as(path)
    assert path.suffix == ".mid"
    mido.MidiFile(path)  # a standard MIDI file to a second reader too
    return pretty_midi.PrettyMIDI(str(path))


def test_midi_downloads_hold_the_melody_and_the_interpolation(page, tmp_path):
    set_temperature(page, 0.5)
    sample(page)
    tokens = sample(page)
    midi = downloaded_midi(page, "download", tmp_path)
    np.testing.assert_array_equal(midi_to_tokens(midi, 32), tokens)
    click_and_wait(page, "interpolate")
    path = np.array(page.evaluate("window.musicvae.pathTokens"))
    midi = downloaded_midi(page, "download-path", tmp_path)
    melodies = midi_to_tokens(midi, 11 * 48).reshape(11, 48)  # 32 steps and a bar of rest each
    np.testing.assert_array_equal(melodies[:, :32], path)


def test_notation_of_a_known_melody(page):
    # C4 quarter; F#4 8th; F#4 16th; F4 dotted... (16th, tied to a quarter, tied to a 16th); rest;
    # C6 across the bar line (8th tied to quarter); rest; B2 half with ledger lines
    notes = [(60, 0, 4), (66, 4, 6), (66, 6, 7), (65, 7, 13), (84, 14, 20), (47, 24, 32)]
    counts = page.evaluate(
        """notes => {
          const svg = engrave(notes.map(([pitch, start, end]) => ({ pitch, start, end })), 32);
          const count = (selector) => svg.querySelectorAll(selector).length;
          return { notes: svg.dataset.notes, heads: count(".notehead"), ties: count(".tie"), sharps: count(".sharp"),
                   naturals: count(".natural"), rests: count(".rest"), clef: svg.dataset.clef };
        }""",
        notes,
    )
    assert counts == {"notes": "6", "heads": 9, "ties": 3, "sharps": 1, "naturals": 1, "rests": 2, "clef": "treble"}


def test_an_attribute_slider_moves_z_by_k_times_its_vector(page, model, site):
    set_temperature(page, 0)
    sample(page)
    base = np.array(page.evaluate("window.musicvae.lastZ"))
    page.focus(f"#k-{SLIDER_ATTRIBUTE}")
    for _ in range(15):  # k = 1.5, one arrow per 0.1
        page.keyboard.press("ArrowRight")
    page.wait_for_function("!window.musicvae.busy", timeout=60_000)
    z = np.array(page.evaluate("window.musicvae.lastZ"), dtype=np.float32)
    vector = json.loads((site[0] / "model" / export.CONFIG_FILE).read_text())["attributes"][0]["vector"]
    np.testing.assert_allclose(z, base + 1.5 * np.array(vector), atol=1e-5)
    np.testing.assert_array_equal(
        page.evaluate("window.musicvae.lastTokens"), inference.decode_latents(model, z[None])[0]
    )
    click_and_wait(page, "reset-attributes")
    np.testing.assert_allclose(page.evaluate("window.musicvae.lastZ"), base, atol=1e-6)


def test_no_sideways_scroll_at_400_px(page):
    page.set_viewport_size({"width": 400, "height": 800})
    sample(page)
    sample(page)
    click_and_wait(page, "interpolate")
    assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")


def test_the_page_says_what_to_do_without_vendor_without_model_and_from_a_file(browser, site, tmp_path):
    pages = {
        "vendor": (copy_page(tmp_path / "no_vendor", vendor=False), "scripts/vendor_web.sh"),
        "model": (copy_page(tmp_path / "no_model"), "python -m musicvae_lib.export"),
    }
    for name, (root, advice) in pages.items():
        server = serve(root)
        problems = []
        page = open_page(browser, url(server), problems)
        assert advice in page.inner_text("#status"), name
        assert page.is_disabled("#sample")
        assert not [problem for problem in problems if problem.startswith("exception")], problems
        page.close()
        server.shutdown()
    problems = []
    page = open_page(browser, (site[0] / "index.html").as_uri(), problems)
    assert "python -m http.server" in page.inner_text("#status")
    assert not [problem for problem in problems if problem.startswith("exception")], problems
    page.close()


def test_every_request_succeeds_the_favicon_too(browser, site):
    problems = []
    page = open_page(browser, site[1], problems)
    page.wait_for_timeout(500)  # the browser asks for the favicon after the load
    icons = page.eval_on_selector_all("link[rel=icon]", "links => links.map(link => link.href.slice(0, 18))")
    page.close()
    assert problems == [] and icons == ["data:image/svg+xml"]


def test_a_300_component_blend_comes_from_prior_bin_and_the_page_draws_at_its_components(browser, blend_site):
    root, address, study_prior = blend_site
    config = json.loads((root / "model" / export.CONFIG_FILE).read_text())["prior"]
    assert (config["components"], config["weights"], config["dtype"]) == (300, "equal", "float32")
    assert (root / "model" / export.CONFIG_FILE).stat().st_size < 20_000  # the means and stds are not in it
    problems = []
    page = open_page(browser, address, problems)
    assert page.inner_text("#prior") == study_prior.describe()
    means, stds = study_prior.density.means, np.sqrt(study_prior.density.variances)
    assert stds.max() < 0.02
    drawn = []
    for _ in range(6):
        sample(page)
        z = np.array(page.evaluate("window.musicvae.lastZ"))
        deviations = (np.abs(z - means) / stds).max(axis=1)  # the largest |z - mean| in standard deviations
        drawn.append(deviations.argmin())
        assert deviations.min() < 5 and 0 < np.abs(z - means[drawn[-1]]).max()  # at a component, with its noise
    assert len(set(drawn)) > 3  # equal weights: six draws from 300 components, mostly different ones
    page.close()
    assert not problems, problems


def test_half_to_float_decodes_every_float16(page):
    bits = np.arange(2**16, dtype=np.uint16)
    decoded = page.evaluate("Array.from({ length: 65536 }, (_, bits) => halfToFloat(bits))")
    expected = bits.view(np.float16).astype(np.float64)
    decoded = np.array(decoded, dtype=np.float64)
    np.testing.assert_array_equal(decoded, expected)  # NaN where NaN, infinities, subnormals
    numbers = ~np.isnan(expected)
    np.testing.assert_array_equal(np.signbit(decoded[numbers]), np.signbit(expected[numbers]))  # -0 too
