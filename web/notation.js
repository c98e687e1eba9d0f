// Staff notation of one melody as SVG, engraved here with no dependency and no font (clef, sharps
// and rests are drawn as paths), so that it works offline in any browser. One staff in 4/4, key of
// C: each note or rest is cut at the bar line and into the durations a bar of 16 steps (16ths)
// allows at its place (whole, dotted half, half, dotted quarter, quarter, dotted 8th, 8th, 16th),
// the pieces of one note joined by ties; a sharp holds to the end of its bar, a natural cancels it.
"use strict";

const STAFF_SPACE = 10; // px between two staff lines
const STAFF_STEP_WIDTH = 17; // px per 16th: notes are spaced by their time
const STAFF_LEFT = 68; // px before the first step: clef and time signature
const STAFF_BAR_PADDING = 10; // px after each bar line
const STAFF_STEM = 34; // px
const STAFF_ACCIDENTAL_ROOM = 9; // px added before a note with a sharp or natural
// [steps, the step grid it must start on]: a dotted half only at a bar's start, a half or dotted
// quarter on the bar's halves, so no duration hides the middle of the bar
const STAFF_DURATIONS = [[16, 16], [12, 16], [8, 8], [6, 8], [4, 4], [3, 4], [2, 2], [1, 1]];
const PITCH_CLASS_SPELLING = [[0, 0], [0, 1], [1, 0], [1, 1], [2, 0], [3, 0], [3, 1], [4, 0], [4, 1], [5, 0], [5, 1], [6, 0]]; // [letter C..B, sharp]
const SVG_NS = "http://www.w3.org/2000/svg";

// [{start, length}] pieces of the span [start, start + length) within one bar, each a duration of
// STAFF_DURATIONS starting on its grid.
function durationPieces(start, length, stepsPerBar) {
  const pieces = [];
  while (length > 0) {
    const within = start % stepsPerBar;
    const [steps] = STAFF_DURATIONS.find(([steps, grid]) => steps <= length && within % grid === 0 && within + steps <= stepsPerBar);
    pieces.push({ start, length: steps });
    start += steps;
    length -= steps;
  }
  return pieces;
}

// The events of a melody, bar by bar: [{start, length, pitch (null: rest), tieNext}], notes
// {pitch, start, end} in steps, `steps` the melody's length.
function staffEvents(notes, steps, stepsPerBar) {
  const spans = [];
  let cursor = 0;
  for (const note of notes) {
    if (note.start > cursor) spans.push({ start: cursor, end: note.start, pitch: null });
    spans.push({ start: note.start, end: note.end, pitch: note.pitch });
    cursor = note.end;
  }
  if (cursor < steps) spans.push({ start: cursor, end: steps, pitch: null });
  const events = [];
  for (const span of spans) {
    for (let start = span.start; start < span.end; ) {
      const barEnd = (Math.floor(start / stepsPerBar) + 1) * stepsPerBar;
      const end = Math.min(span.end, barEnd);
      for (const piece of durationPieces(start, end - start, stepsPerBar)) events.push({ ...piece, pitch: span.pitch, tieNext: span.pitch !== null });
      start = end;
    }
    events.at(-1).tieNext = false; // the last piece of a note ends it
  }
  return events;
}

// Diatonic position of a MIDI pitch (C4 = 28, one per letter) and whether it needs a sharp.
function spelling(pitch) {
  const [letter, sharp] = PITCH_CLASS_SPELLING[pitch % 12];
  return { position: (Math.floor(pitch / 12) - 1) * 7 + letter, sharp: sharp === 1 };
}

function svgElement(name, attributes, parent) {
  const element = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
  parent.append(element);
  return element;
}

const TREBLE_CLEF = "M 24 58 C 17 60 13 53 19 50 C 24 48 27 53 23 56 M 23 56 C 29 54 29 46 27 30 C 25 12 27 4 31 -2 " +
  "C 35 6 33 14 22 24 C 12 33 12 44 22 46 C 31 48 35 37 28 32 C 22 28 16 34 20 40";
const BASS_CLEF = "M 14 12 C 14 4 22 0 28 2 C 38 6 36 24 16 36 M 14 12 C 14 17 21 17 21 12 C 21 8 15 8 14 12 " +
  "M 38 6 a 2 2 0 1 0 0.1 0 M 38 18 a 2 2 0 1 0 0.1 0";

// An SVG element with the staff notation of `notes` ({pitch, start, end} in steps) over `steps`
// steps of `stepsPerBar`: class "notation", data-notes the number of notes, a class "notehead"
// per head (a tied note has several), "rest", "tie", "sharp" and "natural" per sign drawn.
function engrave(notes, steps, stepsPerBar = 16) {
  const pitches = notes.map((note) => note.pitch);
  const mean = pitches.length ? pitches.reduce((a, b) => a + b, 0) / pitches.length : 67;
  const clef = mean >= 55 ? "treble" : "bass";
  const bottomLine = clef === "treble" ? 30 : 18; // E4 or G2
  const positions = pitches.map((pitch) => spelling(pitch).position);
  const high = Math.max(bottomLine + 8, ...positions) + 7, low = Math.min(bottomLine, ...positions) - 7; // room for stems
  const half = STAFF_SPACE / 2;
  const yOf = (position) => (high - position) * half;
  const bars = Math.ceil(steps / stepsPerBar);
  const events = staffEvents(notes, steps, stepsPerBar);
  markAccidentals(events, stepsPerBar);
  const room = new Float64Array(steps + 1); // px added before a step: its accidental's room
  for (const event of events) if (event.accidental) room[event.start] = STAFF_ACCIDENTAL_ROOM;
  for (let step = 1; step <= steps; step++) room[step] += room[step - 1];
  const xOf = (step) => STAFF_LEFT + step * STAFF_STEP_WIDTH + room[step] + Math.floor(step / stepsPerBar) * STAFF_BAR_PADDING + 8;
  const width = xOf(steps) + 6, height = (high - low) * half;
  const svg = document.createElementNS(SVG_NS, "svg");
  for (const [key, value] of Object.entries({ viewBox: `0 0 ${width} ${height}`, class: "notation", role: "img" })) svg.setAttribute(key, value);
  svg.dataset.notes = String(notes.length);
  svg.dataset.clef = clef;
  const ink = svgElement("g", { fill: "#222", stroke: "#222" }, svg);
  const top = yOf(bottomLine + 8);
  for (let line = 0; line < 5; line++) svgElement("line", { x1: 4, x2: width - 2, y1: top + line * STAFF_SPACE, y2: top + line * STAFF_SPACE, "stroke-width": 1 }, ink);
  for (let bar = 1; bar <= bars; bar++) {
    const x = xOf(bar * stepsPerBar) - STAFF_BAR_PADDING + 2;
    svgElement("line", { x1: x, x2: x, y1: top, y2: top + 4 * STAFF_SPACE, "stroke-width": bar === bars ? 3 : 1.2 }, ink);
  }
  svgElement("path", { d: clef === "treble" ? TREBLE_CLEF : BASS_CLEF, transform: `translate(0 ${top})`, fill: "none", "stroke-width": 2.2, class: `clef ${clef}` }, ink);
  for (const y of [top + 2 * STAFF_SPACE - 2, top + 4 * STAFF_SPACE - 2]) {
    svgElement("text", { x: 46, y, "font-size": 22, "font-weight": "bold", "font-family": "serif", stroke: "none" }, ink).textContent = String(stepsPerBar / 4);
  }

  let previous = null;
  for (const event of events) {
    const x = xOf(event.start), dotted = [12, 6, 3].includes(event.length);
    if (event.pitch === null) {
      drawRest(ink, x, top, event.length);
      if (dotted) svgElement("circle", { cx: x + 14, cy: top + 1.5 * STAFF_SPACE, r: 1.8, stroke: "none" }, ink);
      previous = null;
      continue;
    }
    const { position } = spelling(event.pitch);
    const y = yOf(position);
    const tied = previous && previous.tieNext && previous.pitch === event.pitch;
    if (event.accidental) drawAccidental(ink, x - 13, y, event.accidental === "sharp");
    for (let ledger = bottomLine - 2; ledger >= position; ledger -= 2) svgElement("line", { x1: x - 9, x2: x + 9, y1: yOf(ledger), y2: yOf(ledger), "stroke-width": 1.2 }, ink);
    for (let ledger = bottomLine + 10; ledger <= position; ledger += 2) svgElement("line", { x1: x - 9, x2: x + 9, y1: yOf(ledger), y2: yOf(ledger), "stroke-width": 1.2 }, ink);
    const open = event.length >= 8;
    svgElement("ellipse", { cx: x, cy: y, rx: 5.6, ry: 4, transform: `rotate(-20 ${x} ${y})`, fill: open ? "white" : "#222", "stroke-width": 1.5, class: "notehead" }, ink);
    if (dotted) svgElement("circle", { cx: x + 10, cy: (position - bottomLine) % 2 === 0 ? y - half : y, r: 1.8, stroke: "none" }, ink);
    const up = position < bottomLine + 4;
    if (event.length < 16) {
      const sx = up ? x + 5.2 : x - 5.2, end = up ? y - STAFF_STEM : y + STAFF_STEM;
      svgElement("line", { x1: sx, x2: sx, y1: y, y2: end, "stroke-width": 1.3 }, ink);
      const flags = event.length === 1 ? 2 : event.length <= 3 ? 1 : 0;
      for (let flag = 0; flag < flags; flag++) {
        const fy = end + (up ? 1 : -1) * flag * 7, dir = up ? 1 : -1;
        svgElement("path", { d: `M ${sx} ${fy} c 1 ${6 * dir} 9 ${8 * dir} 7 ${16 * dir}`, fill: "none", "stroke-width": 1.6 }, ink);
      }
    }
    if (tied) {
      const px = xOf(previous.start), side = up ? 1 : -1; // the tie opposite the stem
      svgElement("path", { d: `M ${px + 5} ${y + side * 6} Q ${(px + x) / 2} ${y + side * 13} ${x - 5} ${y + side * 6}`, fill: "none", "stroke-width": 1.3, class: "tie" }, ink);
    }
    previous = event;
  }
  return svg;
}

// Set event.accidental to "sharp", "natural" or null: a sharp holds to the end of its bar, a
// natural cancels it, and the later pieces of a tied note show none.
function markAccidentals(events, stepsPerBar) {
  let held = new Map(), bar = -1, previous = null;
  for (const event of events) {
    if (Math.floor(event.start / stepsPerBar) !== bar) { bar = Math.floor(event.start / stepsPerBar); held = new Map(); }
    event.accidental = null;
    if (event.pitch !== null) {
      const { position, sharp } = spelling(event.pitch);
      const tied = previous && previous.tieNext && previous.pitch === event.pitch;
      if (!tied && (held.get(position) ?? false) !== sharp) event.accidental = sharp ? "sharp" : "natural";
      held.set(position, sharp);
    }
    previous = event;
  }
}

function drawAccidental(ink, x, y, sharp) {
  if (sharp) {
    const g = svgElement("g", { class: "sharp", "stroke-width": 1.2 }, ink);
    for (const dx of [-2, 2]) svgElement("line", { x1: x + dx, x2: x + dx, y1: y - 9, y2: y + 9 }, g);
    for (const dy of [-3, 3]) svgElement("line", { x1: x - 5, x2: x + 5, y1: y + dy + 1.5, y2: y + dy - 1.5, "stroke-width": 2.4 }, g);
  } else {
    svgElement("path", { d: `M ${x - 3} ${y - 9} V ${y + 4} L ${x + 3} ${y + 2} M ${x + 3} ${y + 9} V ${y - 4} L ${x - 3} ${y - 2}`, fill: "none", "stroke-width": 1.4, class: "natural" }, ink);
  }
}

function drawRest(ink, x, top, length) {
  const s = STAFF_SPACE, g = svgElement("g", { class: "rest" }, ink);
  if (length === 16) svgElement("rect", { x: x - 6, y: top + s, width: 12, height: s / 2, stroke: "none" }, g);
  else if (length >= 8) svgElement("rect", { x: x - 6, y: top + 1.5 * s, width: 12, height: s / 2, stroke: "none" }, g);
  else if (length >= 4) svgElement("path", { d: `M ${x - 2} ${top + 0.6 * s} l 5 7 l -5 7 l 5 7 q -8 -3 -3 8`, fill: "none", "stroke-width": 2.2 }, g);
  else {
    const hooks = length === 1 ? 2 : 1;
    svgElement("line", { x1: x + 4, x2: x - 1, y1: top + s, y2: top + (hooks + 2) * s, "stroke-width": 1.4 }, g);
    for (let hook = 0; hook < hooks; hook++) svgElement("circle", { cx: x - 1, cy: top + (hook + 1) * s + 1, r: 2.6, stroke: "none" }, g);
  }
}
