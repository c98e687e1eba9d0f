// MusicVAE in the browser: greedy or tempered decoding of z through the exported ONNX graphs
// (python -m musicvae_lib.export), step by step as LstmDecoder.step_through does in PyTorch.
//
// A seed starts a sequence of samples: sample n of seed s is the same melody however fast the
// buttons are pressed, because each sample draws its z and its own decoding seed from the seed's
// stream, decodes run one at a time (a queue), and the buttons are disabled while one runs. Typing
// a seed, even the same one again, starts its sequence again. The attribute sliders move the
// current sample's z by k times each attribute vector (exported with the model) and decode it
// again with the sample's decoding seed. "interpolate A -> B" decodes slerp between the z of the
// last two samples; its ends are those two melodies as shown. One AudioContext plays everything.
// window.musicvae exposes the last z and tokens, so that a test can decode the same z in Python.
"use strict";

const MODEL_DIR = "model/";
const INTERPOLATION_POINTS = 11; // alpha = 0, 0.1, ..., 1, as notebook 07
const TEMPO_QPM = 120; // as representation.tokens_to_midi
const ATTRIBUTE_K_LIMIT = 2; // sliders run k from -2 to 2, as the explorer's (explore.K_LIMIT)
const SERVE_COMMAND = "python -m http.server -d web 8000";
const EXPORT_COMMAND = "python -m musicvae_lib.export results/default --out web/model";

const state = {
  config: null, prior: null, init: null, step: null, // prior: readPrior's
  seed: null, stream: null, drawn: 0, // the seed, its random stream and how many samples it gave
  samples: [], // the last two: {seed, number, base, z, decodeSeed, tokens}; z = base + sum of k * vector
  path: null, // {alphas, tokens, ends: [sample A, sample B]}
  pending: 0, attributeDecodeQueued: false, audio: null,
};
window.musicvae = { ready: false, lastZ: null, lastTokens: null, pathTokens: null, history: [], audioOutput: null, playing: false, busy: false };

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

// The prior from model.json's "prior" and the bytes of its file (prior.bin): means then stds, each
// [components, zSize] row-major, little-endian float16 or float32. An export made before prior.bin
// held means and stds as JSON lists.
function readPrior(description, bytes, zSize) {
  const components = description.components ?? description.weights.length;
  const weights = description.weights === "equal" ? null : Float64Array.from(description.weights);
  if (!bytes) return { components, weights, zSize, means: Float32Array.from(description.means.flat()), stds: Float32Array.from(description.stds.flat()) };
  const width = { float16: 2, float32: 4 }[description.dtype], count = components * zSize;
  if (!width || bytes.byteLength !== 2 * count * width) {
    throw new PageError(`${MODEL_DIR}${description.file} holds ${bytes.byteLength} bytes, not ${count} means and ${count} stds as ` +
      `${description.dtype}: export the model again with \`${EXPORT_COMMAND}\``);
  }
  const view = new DataView(bytes), values = new Float32Array(2 * count);
  for (let i = 0; i < values.length; i++) values[i] = width === 2 ? halfToFloat(view.getUint16(2 * i, true)) : view.getFloat32(4 * i, true);
  return { components, weights, zSize, means: values.subarray(0, count), stds: values.subarray(count) };
}

function halfToFloat(bits) {
  // an IEEE 754 half-precision number (sign, 5 exponent bits, 10 fraction bits) as a number
  const sign = bits & 0x8000 ? -1 : 1, exponent = (bits >> 10) & 0x1f, fraction = bits & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24; // zero and the subnormals
  if (exponent === 0x1f) return fraction ? NaN : sign * Infinity;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

function priorSample(prior, rng) {
  // a component by its weight, then its diagonal Gaussian: mean + std * normal noise (prior.LatentMixture.sample)
  let u = rng(), k = 0;
  if (prior.weights === null) k = Math.min(prior.components - 1, Math.floor(u * prior.components));
  else while (k < prior.components - 1 && (u -= prior.weights[k]) >= 0) k++;
  const noise = standardNormal(rng, prior.zSize), offset = k * prior.zSize;
  return noise.map((value, d) => prior.means[offset + d] + prior.stds[offset + d] * value);
}

// --- the model ---------------------------------------------------------------------------------

class PageError extends Error {} // a problem the user can fix, said in words

async function loadModel() {
  if (location.protocol === "file:") {
    throw new PageError(`this page was opened as a file (file://), from which the browser loads no model: serve the folder with ` +
      `\`${SERVE_COMMAND}\` in the repository and open http://localhost:8000`);
  }
  if (typeof ort === "undefined") {
    throw new PageError("onnxruntime-web is missing (web/vendor/ort.wasm.min.js): run `bash scripts/vendor_web.sh` in the repository (needs npm once), then reload");
  }
  ort.env.wasm.wasmPaths = new URL("vendor/", location.href).href; // a URL: a bare "vendor/" is no module path
  ort.env.wasm.numThreads = 1; // threads need cross-origin isolation, which a plain local server lacks
  let response;
  try {
    response = await fetch(MODEL_DIR + "model.json");
  } catch (error) {
    throw new PageError(`${MODEL_DIR}model.json could not be fetched (${error.message}): is the server (\`${SERVE_COMMAND}\`) still running?`);
  }
  if (!response.ok) throw new PageError(`${MODEL_DIR}model.json not found (HTTP ${response.status}): export a model with \`${EXPORT_COMMAND}\` in the repository, then reload`);
  state.config = await response.json();
  state.config.attributes ??= []; // an export made before the page had sliders
  const priorFile = state.config.prior.file;
  let priorBytes = null;
  if (priorFile) {
    const priorResponse = await fetch(MODEL_DIR + priorFile).catch(() => null);
    if (!priorResponse || !priorResponse.ok) throw new PageError(`${MODEL_DIR}${priorFile} could not be fetched: export the model again with \`${EXPORT_COMMAND}\``);
    priorBytes = await priorResponse.arrayBuffer();
  }
  state.prior = readPrior(state.config.prior, priorBytes, state.config.model_config.z_size);
  for (const name of ["decoder_init", "decoder_step"]) {
    try {
      state[name === "decoder_init" ? "init" : "step"] = await ort.InferenceSession.create(`${MODEL_DIR}${name}.onnx`);
    } catch (error) {
      throw new PageError(`${MODEL_DIR}${name}.onnx could not be loaded (${error.message}): export the model again with \`${EXPORT_COMMAND}\``);
    }
  }
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

// --- tokens to notes, drawing, playing, MIDI ---------------------------------------------------

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

const stepsPerBar = () => 4 * state.config.steps_per_quarter;
const secondsPerStep = () => 60 / TEMPO_QPM / state.config.steps_per_quarter;

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
    ctx.fillStyle = step % stepsPerBar() === 0 ? "#888" : "#ddd";
    ctx.fillRect(step * dx, 0, 1, canvas.height);
  }
  ctx.fillStyle = "#1f77b4";
  for (const note of notes) ctx.fillRect(note.start * dx + 1, (high - note.pitch) * dy + 1, (note.end - note.start) * dx - 2, dy - 2);
  canvas.dataset.notes = String(notes.length);
}

// The one AudioContext of the page, made at the first play (browsers allow audio after a click),
// and its output gain, into which each playback connects a gain of its own that stop() cuts.
function audio() {
  if (!state.audio) {
    const context = new AudioContext();
    const output = context.createGain();
    output.connect(context.destination);
    state.audio = { context, output, voice: null };
    window.musicvae.audioOutput = output;
  }
  if (state.audio.context.state === "suspended") state.audio.context.resume();
  return state.audio;
}

function stop() {
  const voice = state.audio && state.audio.voice;
  if (!voice) return;
  clearTimeout(voice.timer);
  for (const oscillator of voice.oscillators) oscillator.stop();
  voice.gain.disconnect();
  state.audio.voice = null;
  refreshControls();
}

function play(melodies) {
  const { context, output } = audio();
  stop();
  const gain = context.createGain(), oscillators = [];
  gain.connect(output);
  const perStep = secondsPerStep(), start0 = context.currentTime + 0.05;
  let offset = start0, end = start0;
  for (const tokens of melodies) {
    for (const note of notesOf(tokens)) {
      const oscillator = context.createOscillator(), envelope = context.createGain();
      const start = offset + note.start * perStep, stopAt = offset + note.end * perStep;
      oscillator.type = "triangle";
      oscillator.frequency.value = 440 * Math.pow(2, (note.pitch - 69) / 12);
      envelope.gain.setValueAtTime(0.0001, start);
      envelope.gain.exponentialRampToValueAtTime(0.3, start + 0.01);
      envelope.gain.exponentialRampToValueAtTime(0.0001, stopAt);
      oscillator.connect(envelope).connect(gain);
      oscillator.start(start);
      oscillator.stop(stopAt + 0.02);
      oscillators.push(oscillator);
      end = Math.max(end, stopAt + 0.02);
    }
    offset += (tokens.length + stepsPerBar()) * perStep; // a bar of rest between melodies
  }
  const voice = { gain, oscillators, timer: null };
  voice.timer = setTimeout(() => { if (state.audio.voice === voice) stop(); }, (end - context.currentTime) * 1000 + 100);
  state.audio.voice = voice;
  refreshControls();
}

function downloadMidi(melodies, name) {
  const file = midiFile(melodies.map((tokens) => ({ notes: notesOf(tokens), steps: tokens.length })), state.config.steps_per_quarter, stepsPerBar());
  downloadBytes(file, name);
  setStatus(`${name}: ${melodies.length} ${melodies.length === 1 ? "melody" : "melodies"}, ${file.length} bytes`);
}

// --- the page ------------------------------------------------------------------------------------

const $ = (id) => document.getElementById(id);
const temperature = () => Number($("temperature").value);

function setStatus(text, error = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", error);
}

// The seed typed, or null while the field holds no whole number.
function typedSeed() {
  const text = $("seed").value.trim();
  return /^\d{1,9}$/.test(text) ? Number(text) : null;
}

function reseed() {
  const seed = typedSeed();
  state.seed = seed;
  state.stream = seed === null ? null : mulberry32(seed);
  state.drawn = 0;
  if (window.musicvae.ready) setStatus(seed === null ? "type a whole number (0 or more) as seed" : `seed ${seed}: its sequence starts again at sample 1`, seed === null);
  refreshControls();
}

// k of each attribute slider, and z moved by them: base + sum of k * vector
function attributeKs() {
  return state.config.attributes.map((attribute) => Number($(`k-${attribute.name}`).value));
}

function moved(base) {
  const z = Float32Array.from(base), ks = attributeKs();
  state.config.attributes.forEach((attribute, index) => {
    if (ks[index] !== 0) attribute.vector.forEach((value, d) => { z[d] += ks[index] * value; });
  });
  return z;
}

function movedWords() {
  const ks = attributeKs();
  const words = state.config.attributes.flatMap((attribute, index) => (ks[index] ? [`${attribute.name} ${ks[index] > 0 ? "+" : ""}${ks[index]}`] : []));
  return words.length ? `, moved by ${words.join(", ")}` : "";
}

function showCurrent() {
  const sample = state.samples.at(-1);
  drawRoll($("roll"), sample.tokens);
  $("notation").replaceChildren(engrave(notesOf(sample.tokens), sample.tokens.length, stepsPerBar()));
  const other = state.samples.length > 1 ? `; A is sample ${state.samples[0].number} of seed ${state.samples[0].seed}` : "";
  $("melody-title").textContent = `B: sample ${sample.number} of seed ${sample.seed}${other} (temperature ${sample.temperature}${movedWords()})`;
  Object.assign(window.musicvae, { lastZ: Array.from(sample.z), lastTokens: Array.from(sample.tokens) });
}

async function sample() {
  const base = priorSample(state.prior, state.stream);
  const decodeSeed = Math.floor(state.stream() * 4294967296);
  state.drawn += 1;
  const record = { seed: state.seed, number: state.drawn, base, z: moved(base), decodeSeed, temperature: temperature(), tokens: null };
  const started = performance.now();
  [record.tokens] = await decode([record.z], record.temperature, mulberry32(decodeSeed));
  state.samples = [state.samples.at(-1), record].filter(Boolean);
  showCurrent();
  window.musicvae.history.push({ seed: record.seed, number: record.number, tokens: Array.from(record.tokens) });
  setStatus(`sample ${record.number} of seed ${record.seed} decoded in ${(performance.now() - started).toFixed(0)} ms; ${$("roll").dataset.notes} notes`);
}

// The current sample's z moved by the sliders as they are now, decoded again with its decoding seed.
async function moveCurrent() {
  const record = state.samples.at(-1);
  if (!record) return;
  record.z = moved(record.base);
  record.temperature = temperature();
  [record.tokens] = await decode([record.z], record.temperature, mulberry32(record.decodeSeed));
  showCurrent();
  setStatus(`sample ${record.number} of seed ${record.seed}${movedWords() || " as sampled"}: ${$("roll").dataset.notes} notes`);
}

async function interpolate() {
  const [a, b] = state.samples;
  const alphas = Array.from({ length: INTERPOLATION_POINTS }, (_, k) => k / (INTERPOLATION_POINTS - 1));
  const inner = alphas.slice(1, -1);
  const started = performance.now();
  const middle = await decode(inner.map((alpha) => slerp(a.z, b.z, alpha)), temperature(), mulberry32(b.decodeSeed ^ 0x5eed));
  const tokens = [a.tokens, ...middle, b.tokens]; // the ends are the two melodies shown, at any temperature
  state.path = { alphas, tokens, ends: [a, b] };
  $("path").replaceChildren(...tokens.map((melody, k) => {
    const figure = document.createElement("figure"), canvas = document.createElement("canvas");
    canvas.width = 320;
    canvas.height = 120;
    drawRoll(canvas, melody);
    const end = k === 0 ? ` (A, sample ${a.number})` : k === tokens.length - 1 ? ` (B, sample ${b.number})` : "";
    figure.append(canvas, `alpha = ${alphas[k].toFixed(1)}${end}`);
    return figure;
  }));
  $("path-title").textContent = `Interpolation (slerp, ${INTERPOLATION_POINTS} points) from sample ${a.number} to sample ${b.number} of seed ${b.seed}, temperature ${temperature()}`;
  setStatus(`${inner.length} melodies between A and B decoded in ${(performance.now() - started).toFixed(0)} ms`);
  window.musicvae.pathTokens = tokens.map((melody) => Array.from(melody));
}

function refreshControls() {
  const ready = window.musicvae.ready, busy = state.pending > 0;
  const playing = Boolean(state.audio && state.audio.voice);
  $("sample").disabled = !ready || busy || state.seed === null;
  $("interpolate").disabled = !ready || busy || state.samples.length < 2;
  $("interpolate").title = state.samples.length < 2 ? "needs two samples: press sample twice" : "slerp between samples A and B";
  $("play").disabled = $("download").disabled = !ready || state.samples.length === 0;
  $("play-path").disabled = $("download-path").disabled = !ready || state.path === null;
  $("stop").disabled = !playing;
  $("reset-attributes").disabled = !ready || busy || attributeKs().every((k) => k === 0);
  Object.assign(window.musicvae, { busy, playing });
}

function showError(error) {
  setStatus(`error: ${error.message}`, true);
  if (!(error instanceof PageError)) console.warn(error);
}

// Run `job` after every decode before it, with the buttons disabled until it ends.
let queue = Promise.resolve();
function exclusive(job) {
  state.pending += 1;
  refreshControls();
  queue = queue.then(job).catch(showError).finally(() => { state.pending -= 1; refreshControls(); });
  return queue;
}

function attributeSliders() {
  const attributes = state.config.attributes || [];
  $("attribute-fieldset").hidden = attributes.length === 0;
  $("attributes").replaceChildren(...attributes.map((attribute) => {
    const label = document.createElement("label"), output = document.createElement("output"), slider = document.createElement("input");
    Object.assign(slider, { type: "range", id: `k-${attribute.name}`, min: -ATTRIBUTE_K_LIMIT, max: ATTRIBUTE_K_LIMIT, step: 0.1, value: 0 });
    output.textContent = "k = 0";
    slider.addEventListener("input", () => {
      output.textContent = `k = ${slider.value}`;
      queueMove();
    });
    label.append(attribute.label, output, slider);
    return label;
  }));
}

// One decode for any number of slider moves made while another decode runs: it reads the sliders when it starts.
function queueMove() {
  refreshControls();
  if (state.attributeDecodeQueued || !state.samples.length) return;
  state.attributeDecodeQueued = true;
  exclusive(async () => {
    state.attributeDecodeQueued = false;
    await moveCurrent();
  });
}

async function main() {
  $("temperature").addEventListener("input", () => { $("temperature-value").textContent = $("temperature").value; });
  $("seed").addEventListener("input", reseed); // every keystroke, so typing the same seed again restarts it
  $("seed").addEventListener("keydown", (event) => { if (event.key === "Enter" && !$("sample").disabled) $("sample").click(); });
  $("sample").addEventListener("click", () => exclusive(sample));
  $("interpolate").addEventListener("click", () => exclusive(interpolate));
  $("play").addEventListener("click", () => play([state.samples.at(-1).tokens]));
  $("play-path").addEventListener("click", () => play(state.path.tokens));
  $("stop").addEventListener("click", stop);
  $("download").addEventListener("click", () => {
    const record = state.samples.at(-1);
    downloadMidi([record.tokens], `musicvae-seed${record.seed}-sample${record.number}.mid`);
  });
  $("download-path").addEventListener("click", () => {
    const [a, b] = state.path.ends;
    downloadMidi(state.path.tokens, `musicvae-seed${b.seed}-interpolation-${a.number}-${b.number}.mid`);
  });
  $("reset-attributes").addEventListener("click", () => {
    for (const slider of $("attributes").querySelectorAll("input")) { slider.value = 0; slider.previousSibling.textContent = "k = 0"; }
    queueMove();
  });
  await loadModel();
  attributeSliders();
  window.musicvae.ready = true;
  reseed();
  const { z_size: zSize, steps } = state.config.model_config;
  $("prior").textContent = state.config.prior.description;
  setStatus(`model loaded: z of ${zSize} dimensions, ${steps} steps. Press "sample".`);
}

main().catch(showError);
