"""ONNX export: onnxruntime gives PyTorch's outputs on fixed inputs, the files the page needs are
written, and bad input (no model, a hierarchical model, graphs that disagree) is refused."""

import json
import shutil
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch

from musicvae_lib import explore, export, inference, prior, training
from musicvae_lib.model import MusicVAE, preset

sys.path.insert(0, str(Path(__file__).parent))
from tiny_run import make_run  # noqa: E402

REFERENCE = Path(__file__).resolve().parent.parent / "results" / "default" / "training" / "model.pt"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("export") / "run")


@pytest.fixture(scope="module")
def model(run_dir) -> MusicVAE:
    return training.load_model(run_dir / "training" / "model.pt", device="cpu")


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "model"
    assert export.main([str(run_dir), "--out", str(out)]) == 0
    return out


def runtime(folder: Path) -> dict[str, onnxruntime.InferenceSession]:
    return export.sessions({name: (folder / name).read_bytes() for name in export.GRAPH_FILES})


def read_prior(folder: Path) -> tuple[dict, np.ndarray, np.ndarray]:
    """The exported prior as the page reads it: model.json's description, and the means and stds of prior.bin,
    each float64 [components, z]."""
    config = json.loads((folder / export.CONFIG_FILE).read_text())
    return page_prior_arrays(config["prior"], (folder / config["prior"]["file"]).read_bytes(), config["model_config"])


def page_prior_arrays(description: dict, data: bytes, model_config: dict) -> tuple[dict, np.ndarray, np.ndarray]:
    little_endian = {"float16": "<f2", "float32": "<f4"}[description["dtype"]]
    values = np.frombuffer(data, dtype=little_endian).astype(np.float64)
    means, stds = values.reshape(2, description["components"], model_config["z_size"])
    return description, means, stds


def test_export_writes_the_graphs_and_the_page_config(exported, model):
    assert sorted(p.name for p in exported.iterdir()) == sorted(export.EXPORT_FILES)
    assert set(export.EXPORT_FILES) == {*export.GRAPH_FILES, export.PRIOR_FILE, export.CONFIG_FILE}
    config = json.loads((exported / export.CONFIG_FILE).read_text())
    assert config["model_config"]["z_size"] == model.config.z_size == 16
    assert (config["note_off"], config["first_pitch_token"], config["min_pitch_midi"]) == (1, 2, 21)


def test_the_page_samples_from_the_run_prior_or_from_n01(exported, run_dir, model, tmp_path):
    normal, means, stds = read_prior(exported)  # the run has no prior/: N(0, I)
    assert normal["description"] == "N(0, I)" and normal["weights"] == "equal" and normal["components"] == 1
    assert normal["dtype"] == "float16" and (exported / export.PRIOR_FILE).stat().st_size == 2 * 16 * 2
    np.testing.assert_array_equal(means, np.zeros((1, 16)))
    np.testing.assert_array_equal(stds, np.ones((1, 16)))
    with_prior = tmp_path / "run"
    shutil.copytree(run_dir, with_prior)
    mixture = prior.fit_to_model(model, np.load(run_dir / "dataset" / "train.npy"), components=3, seed=0)
    prior.save_study_prior(with_prior, prior.StudyPrior("mixture", mixture), components=3, seed=0)
    assert export.main([str(with_prior), "--out", str(tmp_path / "model")]) == 0
    page_prior, means, stds = read_prior(tmp_path / "model")
    assert page_prior["description"].startswith("a 3-component Gaussian mixture")
    assert page_prior["dtype"] == "float32"  # EM's float64 values are no float16 values: float32, not rounder
    np.testing.assert_allclose(page_prior["weights"], mixture.weights)
    np.testing.assert_allclose(means, mixture.means, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.square(stds), mixture.variances, rtol=1e-6)
    with pytest.raises(ValueError, match="the prior has 4 dimensions"):
        export.page_config(model, prior.StudyPrior("normal", prior.standard_normal(4)))


def test_a_blend_of_every_training_window_reaches_the_page_as_a_sample_in_half_precision():
    # one component per training window: 26,345 over z of 256 in the reference run, 54 MB as float32
    reference = training.load_model(REFERENCE, device="cpu")
    rng = np.random.default_rng(0)
    mu, sigma = rng.standard_normal((6000, 256)), rng.uniform(0.05, 1.0, (6000, 256))
    blend = prior.neighbour_blend(mu, sigma, prior.BlendKnobs(1, 0.5, 1.0), pairs=0, seed=0)
    study_prior = prior.StudyPrior("neighbours", prior.standard_normal(256), 1.0, blend)
    config = json.dumps(export.page_config(reference, study_prior), indent=2)
    data = export.prior_bytes(export.page_density(reference, study_prior))
    description, means, stds = page_prior_arrays(json.loads(config)["prior"], data, asdict(reference.config))
    kept = export.PAGE_COMPONENTS
    assert len(config.encode()) < 10_000 and len(data) == 2 * kept * 256 * 2  # float16: 4 MiB
    assert description["weights"] == "equal" and description["components"] == kept
    assert f"draws from {kept:,} of its 6,000 components" in description["description"]
    rounded = {row.tobytes() for row in blend.mixture.means.astype(np.float16)}
    assert all(row.tobytes() in rounded for row in means.astype(np.float16))  # a sample of the blend's components
    assert len({row.tobytes() for row in np.c_[means, stds]}) == kept  # mutual neighbours share a mean, not stds
    small = prior.StudyPrior(
        "neighbours",
        prior.standard_normal(256),
        1.0,
        prior.neighbour_blend(mu, sigma, prior.BlendKnobs(1, 0.5, 1.0), 500, 0),
    )
    np.testing.assert_array_equal(export.page_density(reference, small).means, small.density.means)  # all kept


def test_a_run_folder_exports_the_explorers_attribute_vectors(exported, run_dir, model, tmp_path):
    attributes = json.loads((exported / export.CONFIG_FILE).read_text())["attributes"]
    vectors = explore.load_explorer(run_dir).vectors
    assert [attribute["name"] for attribute in attributes] == list(explore.EXPLORER_ATTRIBUTES)
    assert attributes[0]["label"] == "note density (notes per bar)"
    for attribute in attributes:
        np.testing.assert_allclose(attribute["vector"], vectors[attribute["name"]])
    assert export.main([str(run_dir / "training" / "model.pt"), "--out", str(tmp_path / "bare")]) == 0
    # a model.pt alone: no windows
    assert json.loads((tmp_path / "bare" / export.CONFIG_FILE).read_text())["attributes"] == []
    with pytest.raises(ValueError, match="attribute vector 'pitch_range' has shape"):
        export.page_config(model, vectors={"pitch_range": np.zeros(4)})


def test_onnxruntime_matches_pytorch_within_tolerance(exported, model):
    differences = export.largest_differences(model, runtime(exported), seed=3)
    assert max(differences["mu"], differences["sigma"], differences["logits"]) <= 1e-4
    assert differences["tokens"] == 0


def test_each_graph_on_fixed_inputs(exported, model):
    graphs = runtime(exported)
    rng = np.random.default_rng(5)
    tokens = rng.integers(0, 90, (4, 32))
    z = rng.standard_normal((4, 16)).astype(np.float32)
    mu, sigma = graphs["encoder.onnx"].run(None, {"tokens": tokens})
    with torch.no_grad():
        torch_mu, torch_sigma = model.encode(torch.from_numpy(tokens))
        torch_tokens, torch_logits = model.decode(torch.from_numpy(z), temperature=0.0)
    np.testing.assert_allclose(mu, torch_mu.numpy(), atol=1e-4)
    np.testing.assert_allclose(sigma, torch_sigma.numpy(), atol=1e-4)
    onnx_tokens, onnx_logits = export.greedy_tokens_onnx(graphs, z, 32, 90)
    np.testing.assert_allclose(onnx_logits, torch_logits.numpy(), atol=1e-4)
    np.testing.assert_array_equal(onnx_tokens, inference.decode_latents(model, z))
    np.testing.assert_array_equal(onnx_tokens, torch_tokens.numpy())


def test_reference_model_exports_within_tolerance(tmp_path):
    differences = export.export(training.load_model(REFERENCE, device="cpu"), tmp_path)
    assert max(differences["mu"], differences["sigma"], differences["logits"]) <= 1e-4 and differences["tokens"] == 0


def test_hierarchical_model_is_refused(tmp_path):
    model = MusicVAE(preset("tiny", steps=32, conductor_size=8))
    with pytest.raises(ValueError, match="only the flat decoder"):
        export.export(model, tmp_path)
    assert not any(tmp_path.iterdir())


def test_graphs_of_other_weights_are_caught(model):
    other = MusicVAE(model.config)  # the same sizes, other (untrained) weights
    differences = export.largest_differences(model, export.sessions(export.graphs(other)))
    assert differences["logits"] > 1e-4
    with pytest.raises(export.ExportError, match="disagree"):
        export.check_differences(differences)


def test_missing_model_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="training/model.pt"):
        export.model_path(tmp_path)
