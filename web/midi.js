// A standard MIDI file (format 0, one track) of melodies given as notes {pitch, start, end} in
// 16th-note steps, as representation.tokens_to_midi writes one in Python: 120 quarter notes per
// minute, 4/4, program 0, velocity 90; melodies follow each other with a bar of rest between.
"use strict";

const MIDI_TICKS_PER_QUARTER = 480;
const MIDI_VELOCITY = 90;
const MIDI_MICROSECONDS_PER_QUARTER = 500000; // 120 quarter notes per minute, as the page plays

// the bytes of a variable-length quantity (the MIDI file's delta times)
function variableLength(value) {
  const bytes = [value & 0x7f];
  for (value >>>= 7; value > 0; value >>>= 7) bytes.unshift((value & 0x7f) | 0x80);
  return bytes;
}

// melodies: [{notes, steps}], steps the length of each melody; stepsPerQuarter: 4 for 16ths.
// Returns the file's bytes (Uint8Array).
function midiFile(melodies, stepsPerQuarter, stepsPerBar) {
  const ticksPerStep = MIDI_TICKS_PER_QUARTER / stepsPerQuarter;
  const events = []; // [tick, order (offs before ons at the same tick), bytes]
  let offset = 0;
  for (const { notes, steps } of melodies) {
    for (const note of notes) {
      events.push([(offset + note.start) * ticksPerStep, 1, [0x90, note.pitch, MIDI_VELOCITY]]);
      events.push([(offset + note.end) * ticksPerStep, 0, [0x80, note.pitch, 0]]);
    }
    offset += steps + stepsPerBar;
  }
  events.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const tempo = MIDI_MICROSECONDS_PER_QUARTER;
  const track = [
    0x00, 0xff, 0x51, 0x03, (tempo >> 16) & 0xff, (tempo >> 8) & 0xff, tempo & 0xff,
    0x00, 0xff, 0x58, 0x04, 4, 2, 24, 8, // 4/4
    0x00, 0xc0, 0x00, // program 0 on channel 1
  ];
  let tick = 0;
  for (const [at, , bytes] of events) {
    track.push(...variableLength(at - tick), ...bytes);
    tick = at;
  }
  track.push(0x00, 0xff, 0x2f, 0x00); // end of track
  const length = track.length;
  const header = [
    0x4d, 0x54, 0x68, 0x64, 0, 0, 0, 6, 0, 0, 0, 1, (MIDI_TICKS_PER_QUARTER >> 8) & 0xff, MIDI_TICKS_PER_QUARTER & 0xff,
    0x4d, 0x54, 0x72, 0x6b, (length >>> 24) & 0xff, (length >>> 16) & 0xff, (length >>> 8) & 0xff, length & 0xff,
  ];
  return Uint8Array.from([...header, ...track]);
}

// Offer bytes as a file download named `name`.
function downloadBytes(bytes, name) {
  const url = URL.createObjectURL(new Blob([bytes], { type: "audio/midi" }));
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
