// MusicVAE in the browser: greedy or tempered decoding of z through the exported ONNX graphs
// (python -m musicvae_lib.export), step by step as LstmDecoder.step_through does in PyTorch.
// window.musicvae exposes the last z and tokens, so that a test can decode the same z in Python.
"use strict";

const MODEL_DIR = "model/";
const INTERPOLATION_POINTS = 11; // alpha = 0, 0.1, ..., 1, as notebook 07
const SECONDS_PER_STEP = 60 / 120 / 4; // a 16th note at 120 quarter notes per minute

const state = { config: null, init: null, step: null, rng: null, zs: [], played: [] };
window.musicvae = { ready: false, lastZ: null, lastTokens: null, pathTokens: null };

// --- random numbers: seeded, so the same seed gives the same melodies --------------------------

function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function standardNormal(rng, n) {
  // Box-Muller; 1 - u keeps the logarithm finite
  const z = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const radius = Math.sqrt(-2 * Math.log(1 - rng()));
    const angle = 2 * Math.PI * rng();
    z[i] = radius * Math.cos(angle);
    if (i + 1 < n) z[i + 1] = radius * Math.sin(angle);
  }
  return z;
}

function priorSample(prior, rng) {
  // a component by its weight, then its diagonal Gaussian (prior.LatentMixture.sample in Python)
  let u = rng(), k = 0;
  while (k < prior.weights.length - 1 && (u -= prior.weights[k]) >= 0) k++;
  const noise = standardNormal(rng, prior.means[k].length);
  return noise.map((value, d) => prior.means[k][d] + prior.stds[k][d] * value);
}

// --- the model ---------------------------------------------------------------------------------

async function loadModel() {
  ort.env.wasm.wasmPaths = new URL("vendor/", location.href).href; // a URL: a bare "vendor/" is no module path
  ort.env.wasm.numThreads = 1; // threads need cross-origin isolation, which a plain local server lacks
  const response = await fetch(MODEL_DIR + "model.json");
  if (!response.ok) throw new Error(`${MODEL_DIR}model.json not found: run .venv/bin/python -m musicvae_lib.export RUN_DIR --out web/model in the repository`);
  state.config = await response.json();
  state.init = await ort.InferenceSession.create(MODEL_DIR + "decoder_init.onnx");
  state.step = await ort.InferenceSession.create(MODEL_DIR + "decoder_step.onnx");
}

function pickToken(logits, offset, n, temperature, rng) {
  let best = offset;
  for (let k = offset + 1; k < offset + n; k++) if (logits[k] > logits[best]) best = k;
  if (temperature === 0) return best - offset;
  let total = 0;
  const weights = new Float64Array(n);
  for (let k = 0; k < n; k++) total += weights[k] = Math.exp((logits[offset + k] - logits[best]) / temperature);
  let u = rng() * total;
  for (let k = 0; k < n; k++) if ((u -= weights[k]) < 0) return k;
  return n - 1;
}

// Decode a batch of z (Float32Array[zSize] each): token arrays, one per z.
async function decode(zs, temperature, rng) {
  const { z_size: zSize, n_classes: nClasses, steps } = state.config.model_config;
  const batch = zs.length;
  const flat = new Float32Array(batch * zSize);
  zs.forEach((z, row) => flat.set(z, row * zSize));
  const z = new ort.Tensor("float32", flat, [batch, zSize]);
  let { h, c } = await state.init.run({ z });
  let previous = new Float32Array(batch * nClasses); // zeros at the first step, as in PyTorch
  const tokens = zs.map(() => new Uint8Array(steps));
  for (let t = 0; t < steps; t++) {
    const out = await state.step.run({ z, previous: new ort.Tensor("float32", previous, [batch, nClasses]), h, c });
    const logits = out.logits.data;
    previous = new Float32Array(batch * nClasses);
    for (let row = 0; row < batch; row++) {
      const token = pickToken(logits, row * nClasses, nClasses, temperature, rng);
      tokens[row][t] = token;
      previous[row * nClasses + token] = 1;
    }
    h = out.h_next;
    c = out.c_next;
  }
  return tokens;
}

function slerp(z0, z1, alpha) {
  // as musicvae_lib.latent.slerp: the great circle, lerp when z0 and z1 are (nearly) parallel
  let dot = 0, n0 = 0, n1 = 0;
  for (let i = 0; i < z0.length; i++) { dot += z0[i] * z1[i]; n0 += z0[i] * z0[i]; n1 += z1[i] * z1[i]; }
  const omega = Math.acos(Math.min(1, Math.max(-1, dot / Math.sqrt(n0 * n1))));
  const s = Math.sin(omega);
  const [w0, w1] = s < 1e-7 ? [1 - alpha, alpha] : [Math.sin((1 - alpha) * omega) / s, Math.sin(alpha * omega) / s];
  return Float32Array.from(z0, (v, i) => w0 * v + w1 * z1[i]);
}

// --- tokens to notes, drawing and playing --------------------------------------------------------

// Notes {pitch, start, end} in steps, as representation.tokens_to_notes: a pitch token starts a
// note, NOTE_OFF ends it, NO_EVENT holds it.
function notesOf(tokens) {
  const { note_off: noteOff, first_pitch_token: first, min_pitch_midi: lowest } = state.config;
  const notes = [];
  let open = null;
  tokens.forEach((token, step) => {
    if (token === noteOff || token >= first) {
      if (open) { open.end = step; notes.push(open); open = null; }
      if (token >= first) open = { pitch: token - first + lowest, start: step, end: null };
    }
  });
  if (open) { open.end = tokens.length; notes.push(open); }
  return notes;
}

function drawRoll(canvas, tokens) {
  const ctx = canvas.getContext("2d");
  const notes = notesOf(tokens);
  const steps = tokens.length;
  const pitches = notes.map((n) => n.pitch);
  const low = Math.min(60, ...pitches) - 2, high = Math.max(72, ...pitches) + 2;
  const dx = canvas.width / steps, dy = canvas.height / (high - low + 1);
  ctx.fillStyle = "white";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  for (let pitch = low; pitch <= high; pitch++) {
    if ([1, 3, 6, 8, 10].includes(pitch % 12)) {
      ctx.fillStyle = "#f0f0f0";
      ctx.fillRect(0, (high - pitch) * dy, canvas.width, dy);
    }
  }
  for (let step = 0; step <= steps; step += 4) {
    ctx.fillStyle = step % 16 === 0 ? "#888" : "#ddd";
    ctx.fillRect(step * dx, 0, 1, canvas.height);
  }
  ctx.fillStyle = "#1f77b4";
  for (const note of notes) ctx.fillRect(note.start * dx + 1, (high - note.pitch) * dy + 1, (note.end - note.start) * dx - 2, dy - 2);
  canvas.dataset.notes = String(notes.length);
}

function play(melodies) {
  const audio = new AudioContext();
  const barSteps = 16;
  let offset = audio.currentTime + 0.05;
  for (const tokens of melodies) {
    for (const note of notesOf(tokens)) {
      const oscillator = audio.createOscillator(), gain = audio.createGain();
      const start = offset + note.start * SECONDS_PER_STEP, end = offset + note.end * SECONDS_PER_STEP;
      oscillator.type = "triangle";
      oscillator.frequency.value = 440 * Math.pow(2, (note.pitch - 69) / 12);
      gain.gain.setValueAtTime(0.0001, start);
      gain.gain.exponentialRampToValueAtTime(0.3, start + 0.01);
      gain.gain.exponentialRampToValueAtTime(0.0001, end);
      oscillator.connect(gain).connect(audio.destination);
      oscillator.start(start);
      oscillator.stop(end + 0.02);
    }
    offset += (tokens.length + barSteps) * SECONDS_PER_STEP; // a bar of rest between melodies
  }
}

// --- the page ------------------------------------------------------------------------------------

const $ = (id) => document.getElementById(id);
const temperature = () => Number($("temperature").value);

function reseed() {
  state.rng = mulberry32(Number($("seed").value));
  state.zs = [];
}

async function sample() {
  const z = priorSample(state.config.prior, state.rng);
  const started = performance.now();
  const [tokens] = await decode([z], temperature(), state.rng);
  state.zs = [state.zs.at(-1), z].filter(Boolean);
  state.played = [tokens];
  drawRoll($("roll"), tokens);
  $("melody-title").textContent = `Sample ${state.zs.length === 1 ? "A" : "B"} (temperature ${temperature()}, seed ${$("seed").value})`;
  $("interpolate").disabled = state.zs.length < 2;
  $("status").textContent = `decoded in ${(performance.now() - started).toFixed(0)} ms; ${$("roll").dataset.notes} notes`;
  Object.assign(window.musicvae, { lastZ: Array.from(z), lastTokens: Array.from(tokens) });
}

async function interpolate() {
  const [z0, z1] = state.zs;
  const alphas = Array.from({ length: INTERPOLATION_POINTS }, (_, k) => k / (INTERPOLATION_POINTS - 1));
  const started = performance.now();
  const path = await decode(alphas.map((alpha) => slerp(z0, z1, alpha)), temperature(), state.rng);
  $("path").replaceChildren(...path.map((tokens, k) => {
    const figure = document.createElement("figure"), canvas = document.createElement("canvas");
    canvas.width = 320;
    canvas.height = 120;
    drawRoll(canvas, tokens);
    figure.append(canvas, `alpha = ${alphas[k].toFixed(1)}`);
    return figure;
  }));
  state.played = path;
  $("status").textContent = `${path.length} melodies decoded in ${(performance.now() - started).toFixed(0)} ms`;
  window.musicvae.pathTokens = path.map((tokens) => Array.from(tokens));
}

function guarded(action) {
  return async () => {
    try {
      await action();
    } catch (error) {
      $("status").textContent = `error: ${error.message}`;
      throw error;
    }
  };
}

async function main() {
  $("temperature").addEventListener("input", () => { $("temperature-value").textContent = $("temperature").value; });
  $("seed").addEventListener("change", reseed);
  $("sample").addEventListener("click", guarded(sample));
  $("interpolate").addEventListener("click", guarded(interpolate));
  $("play").addEventListener("click", () => play(state.played));
  await loadModel();
  reseed();
  $("sample").disabled = false;
  $("play").disabled = false;
  const { z_size: zSize, steps } = state.config.model_config;
  $("prior").textContent = state.config.prior.description;
  $("status").textContent = `model loaded: z of ${zSize} dimensions, ${steps} steps. Press "sample".`;
  window.musicvae.ready = true;
}

guarded(main)();
