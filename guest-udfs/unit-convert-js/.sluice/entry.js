// Written by `sluice udf build`: the `sluice:udf` world around app.js's default export.
import Udf from '../app.js';
import { exportUdf } from '../sluice_udf.js';
import { log } from 'sluice:udf/host@0.1.0';

const udf = exportUdf(Udf, log);

export function init(config) {
  udf.init(config);
}

export function process(batch) {
  return udf.process(batch);
}
