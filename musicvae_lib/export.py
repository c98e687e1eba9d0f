"""Export a trained flat MusicVAE to ONNX for the browser page (web/), checked against PyTorch.

Three graphs, so that the page can decode step by step as ``LstmDecoder.step_through`` does and
sample at any temperature itself:

- ``encoder.onnx``: tokens int64 [batch, steps] -> mu, sigma float [batch, z_size];
- ``decoder_init.onnx``: z [batch, z_size] -> h, c [layers, batch, size], tanh(dense(z));
- ``decoder_step.onnx``: z, previous (one-hot float [batch, 90], zeros at the first step), h, c
  -> logits [batch, 90], h_next, c_next.

``model.json`` beside them holds the sizes, the token layout, the prior the page samples z from
(the run folder's, notebook 03's ``prior``: the neighbour blend, the mixture fitted to the training
mu, or N(0, I) for a model.pt file or a run folder without ``prior/``) and, for a run folder, the
attribute vectors of the explorer (notebook 08, ``explore.load_explorer``) that the page's sliders
add to z. The prior's means and standard deviations are binary, in ``prior.bin`` (``page_prior``
says its layout; a blend of more than ``PAGE_COMPONENTS`` is cut to that many, ``page_density``).
Before anything is written, onnxruntime runs each graph on fixed inputs and its outputs must equal PyTorch's within
``TOLERANCE``, and greedy decoding through the step graph must give PyTorch's greedy tokens.

    .venv/bin/python -m musicvae_lib.export results/default --out web/model

The graphs come from the TorchScript exporter (``dynamo=False``): it writes ``nn.LSTM`` as one
ONNX LSTM node, which onnxruntime-web runs in WebAssembly.
"""

from __future__ import annotations

import argparse
import io
import json
import warnings
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from torch import Tensor, nn

from musicvae_lib import features, prior, run_folder, training
from musicvae_lib.model import MusicVAE, initial_state
from musicvae_lib.representation import FIRST_PITCH_TOKEN, MIN_PITCH, NO_EVENT, NOTE_OFF, STEPS_PER_QUARTER

TOLERANCE = 1e-4  # largest absolute difference allowed between onnxruntime and PyTorch outputs
OPSET = 17
CHECK_BATCH = 3  # rows of the fixed inputs the export is checked on
GRAPH_FILES = ("encoder.onnx", "decoder_init.onnx", "decoder_step.onnx")
CONFIG_FILE = "model.json"
PRIOR_FILE = "prior.bin"  # the prior's means, then its standard deviations (``page_prior``)
EXPORT_FILES = (*GRAPH_FILES, PRIOR_FILE, CONFIG_FILE)  # everything ``export`` writes
PRIOR_LAYOUT = "means then stds, each [components, z_size] row-major, little-endian"
PAGE_COMPONENTS = 4096  # the most components the page's prior.bin keeps (``page_density``)


class ExportError(RuntimeError):
    """The ONNX graphs disagree with the PyTorch model; nothing was written."""


class DecoderInit(nn.Module):
    """z [B, z_size] -> the decoder LSTM's initial (h, c), each [layers, B, size]."""

    def __init__(self, model: MusicVAE):
        super().__init__()
        self.decoder = model.decoder

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return initial_state(self.decoder.to_state, z, self.decoder.layers, self.decoder.size)


class DecoderStep(nn.Module):
    """One step of ``LstmDecoder.step_through``: (z, previous one-hot, h, c) -> (logits [B, 90], h, c)."""

    def __init__(self, model: MusicVAE):
        super().__init__()
        self.decoder = model.decoder

    def forward(self, z: Tensor, previous: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        output, (h, c) = self.decoder.lstm(torch.cat([previous, z], dim=-1)[:, None], (h, c))
        return self.decoder.to_logits(output[:, 0]), h, c


def exportable(model: MusicVAE) -> MusicVAE:
    """The model in eval mode on the CPU; ValueError for a hierarchical model, which the page cannot decode."""
    if model.config.hierarchical:
        raise ValueError(
            "only the flat decoder can be exported (the page decodes step by step); this model is hierarchical"
        )
    return model.cpu().eval()


def onnx_bytes(module: nn.Module, inputs: tuple[Tensor, ...], input_names: list[str], output_names: list[str]) -> bytes:
    """``module`` as an ONNX graph (TorchScript exporter), every input and output with a dynamic batch axis."""
    batch_axis = {
        name: {1 if name[0] in "hc" else 0: "batch"} for name in input_names + output_names
    }  # h, c: [layers, B, size]
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # the legacy exporter is chosen on purpose (module docstring); its LSTM batch-size warning
        # does not apply: check_inputs run every graph at batch 3 after exporting at batch 1
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export")
        warnings.filterwarnings("ignore", message=".*batch_size other than 1.*LSTM")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)  # nn.LSTM's shape checks, constant here
        torch.onnx.export(
            module,
            inputs,
            buffer,
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=batch_axis,
            opset_version=OPSET,
            dynamo=False,
        )
    return buffer.getvalue()


def graphs(model: MusicVAE) -> dict[str, bytes]:
    """The three ONNX graphs of a flat model, by file name."""
    model = exportable(model)
    config = model.config
    tokens = torch.zeros(1, config.steps, dtype=torch.long)
    z = torch.zeros(1, config.z_size)
    h = torch.zeros(config.decoder_layers, 1, config.decoder_size)
    previous = torch.zeros(1, config.n_classes)
    with torch.no_grad():
        return {
            "encoder.onnx": onnx_bytes(model.encoder, (tokens,), ["tokens"], ["mu", "sigma"]),
            "decoder_init.onnx": onnx_bytes(DecoderInit(model), (z,), ["z"], ["h", "c"]),
            "decoder_step.onnx": onnx_bytes(
                DecoderStep(model), (z, previous, h, h), ["z", "previous", "h", "c"], ["logits", "h_next", "c_next"]
            ),
        }


def sessions(graph_bytes: dict[str, bytes]) -> dict[str, onnxruntime.InferenceSession]:
    """An onnxruntime CPU session per graph."""
    return {
        name: onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
        for name, data in graph_bytes.items()
    }


def greedy_tokens_onnx(
    runtime: dict[str, onnxruntime.InferenceSession], z: np.ndarray, steps: int, n_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy decoding through the step graph, as the page does it:
    (tokens int64 [B, steps], logits float32 [B, steps, 90])."""
    z = np.asarray(z, dtype=np.float32)
    h, c = runtime["decoder_init.onnx"].run(None, {"z": z})
    previous = np.zeros((len(z), n_classes), dtype=np.float32)
    tokens, logits = [], []
    for _ in range(steps):
        step_logits, h, c = runtime["decoder_step.onnx"].run(None, {"z": z, "previous": previous, "h": h, "c": c})
        token = step_logits.argmax(-1)
        previous = np.eye(n_classes, dtype=np.float32)[token]
        tokens.append(token)
        logits.append(step_logits)
    return np.stack(tokens, 1), np.stack(logits, 1)


def check_inputs(model: MusicVAE, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Fixed inputs for the parity check: (tokens int64 [3, steps], z float32 [3, z_size]), drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, model.config.n_classes, (CHECK_BATCH, model.config.steps))
    return tokens, rng.standard_normal((CHECK_BATCH, model.config.z_size)).astype(np.float32)


def largest_differences(
    model: MusicVAE, runtime: dict[str, onnxruntime.InferenceSession], seed: int = 0
) -> dict[str, float]:
    """Largest |onnxruntime - PyTorch| of mu, sigma and the greedy decoding's logits on ``check_inputs``.

    The decoding runs in onnxruntime feeding back its own argmax; the PyTorch logits are those of
    ``model.decode`` at temperature 0, and ``tokens`` counts the steps whose greedy token differs.
    """
    model = exportable(model)
    tokens, z = check_inputs(model, seed)
    mu, sigma = runtime["encoder.onnx"].run(None, {"tokens": tokens})
    onnx_tokens, onnx_logits = greedy_tokens_onnx(runtime, z, model.config.steps, model.config.n_classes)
    with torch.no_grad():
        torch_mu, torch_sigma = model.encode(torch.from_numpy(tokens))
        torch_tokens, torch_logits = model.decode(torch.from_numpy(z), temperature=0.0)
    return {
        "mu": float(np.abs(mu - torch_mu.numpy()).max()),
        "sigma": float(np.abs(sigma - torch_sigma.numpy()).max()),
        "logits": float(np.abs(onnx_logits - torch_logits.numpy()).max()),
        "tokens": float((onnx_tokens != torch_tokens.numpy()).sum()),
    }


def check_differences(differences: dict[str, float]) -> None:
    """ExportError if an output of ``largest_differences`` exceeds ``TOLERANCE`` or a greedy token differs."""
    if differences["tokens"] or max(differences[name] for name in ("mu", "sigma", "logits")) > TOLERANCE:
        raise ExportError(f"the ONNX graphs disagree with PyTorch beyond {TOLERANCE}: {differences}; nothing written")


def page_density(model: MusicVAE, study_prior: prior.StudyPrior | None) -> prior.LatentMixture:
    """The density the page draws z from: the study prior's, N(0, I) without one; ValueError unless its z is
    the model's.

    A mixture of more than ``PAGE_COMPONENTS`` equal-weight components (the neighbour blend keeps one per training
    window: 26,345 in the reference run, 54 MB as float32) is cut to that many, drawn with seed 0, its values rounded
    to float16 (4 MB): the page draws from a sample of the blend's pairs (``page_note`` says so on the page).
    """
    density = study_prior.density if study_prior else prior.standard_normal(model.config.z_size)
    if density.z_size != model.config.z_size:
        raise ValueError(f"the prior has {density.z_size} dimensions, the model's z {model.config.z_size}")
    if len(density.weights) > PAGE_COMPONENTS and np.all(density.weights == density.weights[0]):
        kept = np.sort(np.random.default_rng(0).choice(len(density.weights), PAGE_COMPONENTS, replace=False))
        means, stds = (
            values[kept].astype(np.float16).astype(np.float64) for values in (density.means, np.sqrt(density.variances))
        )
        stds = np.maximum(stds, float(np.finfo(np.float16).tiny))  # a std rounded to 0 would be no Gaussian
        density = prior.LatentMixture(np.full(PAGE_COMPONENTS, 1.0 / PAGE_COMPONENTS), means, stds**2)
    return density


def page_note(study_prior: prior.StudyPrior | None, density: prior.LatentMixture) -> str:
    """The page's description of its prior: ``StudyPrior.describe``, and how many components it kept."""
    description = study_prior.describe() if study_prior else "N(0, I)"
    full = len(study_prior.density.weights) if study_prior else 1
    if len(density.weights) < full:
        description += f" (the page draws from {len(density.weights):,} of its {full:,} components, in half precision)"
    return description


def prior_dtype(density: prior.LatentMixture) -> str:
    """The type ``PRIOR_FILE`` stores the means and standard deviations as: "float16" when they all are float16
    values (N(0, I), a blend cut to ``PAGE_COMPONENTS`` by ``page_density``), else "float32" (a fitted mixture, a
    smaller blend): the page reads them back exactly, or as its float32 z holds them."""
    values = np.concatenate([density.means, np.sqrt(density.variances)])
    with np.errstate(over="ignore"):
        return "float16" if np.array_equal(values.astype(np.float16), values) else "float32"


def prior_bytes(density: prior.LatentMixture) -> bytes:
    """``PRIOR_FILE``'s content: the means, then the standard deviations, as ``PRIOR_LAYOUT`` and ``prior_dtype``
    say."""
    little_endian = "<f2" if prior_dtype(density) == "float16" else "<f4"
    return np.concatenate([density.means, np.sqrt(density.variances)]).astype(little_endian).tobytes()


def page_prior(
    model: MusicVAE, study_prior: prior.StudyPrior | None, density: prior.LatentMixture | None = None
) -> dict:
    """The density the page draws z from (N(0, I) without a study prior) as JSON: its description, the number of
    components, their weights ("equal" when they are) and the layout of ``PRIOR_FILE``, which holds the rest.
    ``density``: ``page_density``'s, when the caller has made it already."""
    density = density if density is not None else page_density(model, study_prior)
    equal = bool(np.all(density.weights == density.weights[0]))
    return {
        "description": page_note(study_prior, density),
        "components": len(density.weights),
        "weights": "equal" if equal else density.weights.tolist(),
        "file": PRIOR_FILE,
        "dtype": prior_dtype(density),
        "layout": PRIOR_LAYOUT,
    }


def page_attributes(model: MusicVAE, vectors: Mapping[str, np.ndarray] | None) -> list[dict]:
    """The attribute vectors for the page's sliders as JSON: [{name, label, vector}], empty without vectors.

    ``label`` is the feature's axis label (``features.FEATURE_UNITS``), the explorer's wording.
    """
    attributes = []
    for name, vector in (vectors or {}).items():
        vector = np.asarray(vector, dtype=np.float64)
        if vector.shape != (model.config.z_size,):
            raise ValueError(
                f"attribute vector {name!r} has shape {vector.shape}, the model's z ({model.config.z_size},)"
            )
        attributes.append({"name": name, "label": features.FEATURE_UNITS.get(name, name), "vector": vector.tolist()})
    return attributes


def page_config(
    model: MusicVAE,
    study_prior: prior.StudyPrior | None = None,
    vectors: Mapping[str, np.ndarray] | None = None,
    density: prior.LatentMixture | None = None,
) -> dict:
    """What the page needs besides the graphs: sizes, the token layout of ``representation``,
    the prior (``density`` as ``page_prior``) and the attribute vectors."""
    return {
        "model_config": asdict(model.config),
        "prior": page_prior(model, study_prior, density),
        "attributes": page_attributes(model, vectors),
        "no_event": NO_EVENT,
        "note_off": NOTE_OFF,
        "first_pitch_token": FIRST_PITCH_TOKEN,
        "min_pitch_midi": MIN_PITCH,
        "steps_per_quarter": STEPS_PER_QUARTER,
    }


def export(
    model: MusicVAE,
    out_dir: str | Path,
    seed: int = 0,
    study_prior: prior.StudyPrior | None = None,
    vectors: Mapping[str, np.ndarray] | None = None,
) -> dict[str, float]:
    """Write the three graphs, ``prior.bin`` and ``model.json`` to ``out_dir`` after checking them; returns the
    largest differences.

    The page samples z from ``study_prior`` (``prior.load_study_prior``), from N(0, I) without one,
    and offers a slider per attribute vector of ``vectors`` (name -> float [z_size]; none without).

    ExportError (and nothing written) if any output differs from PyTorch by more than ``TOLERANCE``
    or a greedy token differs.
    """
    graph_bytes = graphs(model)
    differences = largest_differences(model, sessions(graph_bytes), seed)
    check_differences(differences)
    density = page_density(model, study_prior)
    config = page_config(model, study_prior, vectors, density)  # ValueError before anything is written
    prior_data = prior_bytes(density)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, data in graph_bytes.items():
        (out / name).write_bytes(data)
    (out / PRIOR_FILE).write_bytes(prior_data)
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    return differences


def model_path(source: str | Path) -> Path:
    """``source`` itself if it is a file, else the run folder's ``training/model.pt``;
    FileNotFoundError naming it if missing."""
    path = Path(source)
    if path.is_dir():
        path = path / run_folder.TRAINED_MODEL
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: pass a run folder with training/model.pt (notebook 03) or a model.pt file"
        )
    return path


def run_prior(source: str | Path, model: MusicVAE) -> prior.StudyPrior | None:
    """The prior of the run folder ``source`` (notebook 03's ``prior/``, a neighbour blend rebuilt with ``model``, the
    run's); None for a model.pt file or a run without one."""
    folder = Path(source)
    if folder.is_dir() and (folder / run_folder.PRIOR_CHOICE).is_file():
        return prior.load_study_prior(folder, model)
    return None


def run_attribute_vectors(source: str | Path) -> dict[str, np.ndarray] | None:
    """The explorer's attribute vectors of the run folder ``source`` (``explore.load_explorer``);
    None for a model.pt file."""
    folder = Path(source)
    if not (folder.is_dir() and (folder / run_folder.split_file("train")).is_file()):
        return None
    from musicvae_lib import explore  # only here: it brings ipywidgets, which the graphs do not need

    return dict(explore.load_explorer(folder).vectors)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="a run folder (its training/model.pt is exported) or a model.pt file")
    parser.add_argument(
        "--out", default="web/model", help="folder for the ONNX graphs, prior.bin and model.json (default: web/model)"
    )
    arguments = parser.parse_args(argv)
    path = model_path(arguments.source)
    model = training.load_model(path, device="cpu")
    study_prior = run_prior(arguments.source, model)
    vectors = run_attribute_vectors(arguments.source)
    differences = export(model, arguments.out, study_prior=study_prior, vectors=vectors)
    print(
        f"exported {path} to {arguments.out}/ ({', '.join(EXPORT_FILES)}); largest difference from "
        f"PyTorch: {max(differences['mu'], differences['sigma'], differences['logits']):.2e}; the page samples z from "
        f"{study_prior.describe() if study_prior else 'N(0, I)'}; attribute sliders: "
        f"{', '.join(vectors) if vectors else 'none (a model.pt file has no training windows)'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
