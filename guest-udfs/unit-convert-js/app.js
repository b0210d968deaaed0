// Example UDF (map) in JavaScript: `{"celsius": 21.5, ...}` becomes `{"fahrenheit": 70.7, ...}`.
// Config: `field` (default `celsius`) names the input field. The same conversion as the Rust
// `unit-convert`; JSON.stringify writes whole numbers without `.0` (`-40`, not `-40.0`), so the
// golden samples differ there. For SQL it offers `FAHRENHEIT(celsius)`, a DOUBLE.

import { InvalidInput } from './sluice_udf.js';

// Rounds like Rust's f64::round (halves away from zero); Math.round rounds halves up.
function roundHalfAway(value) {
  return Math.sign(value) * Math.floor(Math.abs(value) + 0.5);
}

function fahrenheit(celsius) {
  return roundHalfAway(((celsius * 9.0) / 5.0 + 32.0) * 100.0) / 100.0;
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
    doc.fahrenheit = fahrenheit(celsius);
    const sorted = Object.fromEntries(Object.entries(doc).sort(([a], [b]) => (a < b ? -1 : 1)));
    return message.withJson(sorted);
  }

  call(name, args) {
    if (name !== 'FAHRENHEIT') throw new InvalidInput(`no scalar function ${name} (FAHRENHEIT)`);
    const [celsius] = args;
    if (celsius === null) return null;
    if (typeof celsius !== 'number') throw new InvalidInput('FAHRENHEIT takes a number');
    return fahrenheit(celsius);
  }
}
