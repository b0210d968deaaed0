// The JavaScript SDK's own tests, on Node.js: node --test (in this folder).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Config, Failed, InvalidInput, Message, exportUdf } from './sluice_udf.js';

const text = (bytes) => new TextDecoder().decode(bytes);

test('config lookups name the key and the value', () => {
  const config = new Config([['n', '7'], ['x', '1.5'], ['b', 'yes'], ['n', '8'], ['bad', 'seven']]);
  assert.equal(config.get('n'), '8', 'the last one wins');
  assert.equal(config.getInt('n'), 8);
  assert.equal(config.getFloat('x'), 1.5);
  assert.equal(config.getBool('b'), true);
  assert.equal(config.getInt('missing', 3), 3);
  assert.throws(() => config.getInt('bad'), {
    name: 'InvalidInput',
    message: 'config: key `bad` = "seven" is not valid: expected an integer',
  });
  assert.throws(() => config.require('gone'), InvalidInput);
});

test('builders keep what they do not touch', () => {
  const m = new Message('a', { key: 'k', headers: [['h', '1']], timestampMs: 5n });
  const out = m.withValue('b').withHeader('h2', '2');
  assert.equal(out.text(), 'b');
  assert.equal(text(out.key), 'k');
  assert.equal(out.timestampMs, 5n);
  assert.equal(text(out.header('h')), '1');
  assert.equal(text(out.header('h2')), '2');
  assert.equal(out.header('none'), undefined);
  assert.equal(m.text(), 'a', 'the original is unchanged');
});

test('text and JSON errors are invalid input', () => {
  assert.throws(() => new Message(new Uint8Array([0xff])).text(), InvalidInput);
  assert.throws(() => new Message('{').json(), InvalidInput);
  assert.deepEqual(new Message('{"a":1}').json(), { a: 1 });
  assert.equal(new Message().withJson({ b: 1, a: [1.5] }).text(), '{"b":1,"a":[1.5]}');
  assert.throws(() => new Message().withJson(undefined), Failed);
});

class Shape {
  init(config) {
    this.mode = config.require('mode');
  }
  process(message) {
    const value = message.text();
    if (value === 'drop') return null;
    if (value === 'split') return [message.withValue('a'), message.withValue('b')];
    if (value === 'invalid') throw new InvalidInput('bad record');
    if (value === 'crash') return undefined.field;
    if (value === 'wrong') return 42;
    return message.withValue(value + this.mode);
  }
}

const raw = (value) => ({ value: new TextEncoder().encode(value), headers: [] });

test('zero, one, several or an error per record', () => {
  const world = exportUdf(Shape);
  world.init([['mode', '!']]);
  const results = world.process(['x', 'drop', 'split', 'invalid', 'crash', 'wrong'].map(raw));
  assert.equal(results.length, 6);
  assert.deepEqual(results[0].val.map((m) => text(m.value)), ['x!']);
  assert.deepEqual(results[1], { tag: 'ok', val: [] });
  assert.deepEqual(results[2].val.map((m) => text(m.value)), ['a', 'b']);
  assert.deepEqual(results[3], { tag: 'err', val: { tag: 'invalid-input', val: 'bad record' } });
  assert.equal(results[4].tag, 'err');
  assert.match(results[4].val.val, /^TypeError: /);
  assert.equal(results[5].val.tag, 'failed');
});

test('a failing init throws its reason; process before init fails every record', () => {
  const world = exportUdf(Shape);
  assert.throws(() => world.init([]), {
    tag: 'invalid-input',
    val: 'config: missing required key `mode`',
  });
  assert.deepEqual(world.process([raw('x')]), [
    { tag: 'err', val: { tag: 'failed', val: 'process called before a successful init' } },
  ]);
});

class Functions {
  call(name, args) {
    if (name === 'TWICE') return args[0] === null ? null : typeof args[0] === 'string' ? args[0] + args[0] : args[0] * 2;
    if (name === 'BIG') return BigInt(args[0]) * 2n;
    if (name === 'BAD') return {};
    throw new InvalidInput(`no scalar function ${name}`);
  }
}

test('scalar calls: one result per row, values both ways', () => {
  const world = exportUdf(Functions);
  world.init([]);
  const rows = [
    [{ tag: 'integer', val: 21n }],
    [{ tag: 'double', val: 1.25 }],
    [{ tag: 'text', val: 'ab' }],
    [{ tag: 'null' }],
  ];
  assert.deepEqual(world.call('TWICE', rows), [
    { tag: 'ok', val: { tag: 'double', val: 42 } },
    { tag: 'ok', val: { tag: 'double', val: 2.5 } },
    { tag: 'ok', val: { tag: 'text', val: 'abab' } },
    { tag: 'ok', val: { tag: 'null' } },
  ]);
  assert.deepEqual(world.call('BIG', [[{ tag: 'integer', val: 2n ** 60n }]]), [
    { tag: 'ok', val: { tag: 'integer', val: 2n ** 61n } },
  ]);
  assert.equal(world.call('BAD', [[]])[0].val.tag, 'failed');
  assert.deepEqual(world.call('NOPE', [[]]), [
    { tag: 'err', val: { tag: 'invalid-input', val: 'no scalar function NOPE' } },
  ]);
  const plain = exportUdf(Shape);
  plain.init([['mode', '!']]);
  assert.deepEqual(plain.call('F', [[]]), [
    { tag: 'err', val: { tag: 'invalid-input', val: 'no scalar function F in this UDF' } },
  ]);
});
