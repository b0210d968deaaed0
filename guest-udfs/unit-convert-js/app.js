// Example UDF (map) in JavaScript: `{"celsius": 21.5, ...}` becomes `{"fahrenheit": 70.7, ...}`.
// Config: `field` (default `celsius`) names the input field. The same conversion as the Rust
// `unit-convert`; JSON.stringify writes whole numbers without `.0` (`-40`, not `-40.0`), so the
// golden samples differ there.

import { InvalidInput } from './sluice_udf.js';

// Rounds like Rust's f64::round (halves away from zero); Math.round rounds halves up.
function roundHalfAway(value) {
  return Math.sign(value) * Math.floor(Math.abs(value) + 0.5);
}

export default class UnitConvert {
  init(config) {
    this.field = config.get('field', 'celsius');
  }

  process(message) {
    const doc = message.json();
    const celsius = doc !== null && typeof doc === 'object' ? doc[this.field] : undefined;
    if (typeof celsius !== 'number') {
      throw new InvalidInput(`no number in field \`${this.field}\``);
    }
    delete doc[this.field];
    doc.fahrenheit = roundHalfAway(((celsius * 9.0) / 5.0 + 32.0) * 100.0) / 100.0;
    const sorted = Object.fromEntries(Object.entries(doc).sort(([a], [b]) => (a < b ? -1 : 1)));
    return message.withJson(sorted);
  }
}
