// The unit test, on Node.js: node --test

import { test } from 'node:test';
import assert from 'node:assert/strict';
import UnitConvert from './app.js';
import { Config, InvalidInput, Message } from './sluice_udf.js';

test('converts and keeps other fields', () => {
  const udf = new UnitConvert();
  udf.init(new Config());
  const out = udf.process(new Message('{"sensor":"a","celsius":21.5}'));
  assert.equal(out.text(), '{"fahrenheit":70.7,"sensor":"a"}');
});

test('a missing field is invalid input', () => {
  const udf = new UnitConvert();
  udf.init(new Config({ field: 'temp' }));
  assert.throws(() => udf.process(new Message('{"celsius":1}')), InvalidInput);
});

test('FAHRENHEIT for SQL', () => {
  const udf = new UnitConvert();
  assert.equal(udf.call('FAHRENHEIT', [21.5]), 70.7);
  assert.equal(udf.call('FAHRENHEIT', [null]), null);
  assert.throws(() => udf.call('KELVIN', [1]), InvalidInput);
});
