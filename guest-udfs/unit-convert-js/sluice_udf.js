// The Sluice UDF SDK for JavaScript: write a WebAssembly UDF as one class.
//
// A UDF is a class with `init(config)` and `process(message)`, the default export of
// `app.js`; `sluice udf build` wraps it into the `sluice:udf` world (the contract in the
// repository's `wit/` folder) and builds a component with componentize-js. The host calls
// `init` once per instance with the pipeline's `config` table, then `process` once per
// message, in order.
//
// `process` returns null, undefined or [] (filter the message out), one Message (map) or an
// array of them (flat-map). Throw `InvalidInput` when the message is malformed (retrying will
// not help) or `Failed` for anything else; either fails that message alone, and any other
// exception counts as `Failed` with its name and text.
//
// A UDF can also offer scalar functions to SQL (`SELECT ANOMALY(SENSORINPUT) ...`): define
// `call(functionName, args)`, which gets the function's name (upper-cased) and one row of
// arguments (null, booleans, numbers for DOUBLE, numbers or BigInts for INTEGER, strings) and
// returns one: a number is a DOUBLE, a BigInt an INTEGER.
//
// The same code runs natively (Node.js, for unit tests) and in the component. This file has
// no imports, so `node --test` needs nothing installed.

export const VERSION = '0.1.0';

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/** Why a UDF could not process one message (or could not initialise). */
export class UdfError extends Error {
  get kind() {
    return 'failed';
  }

  get name() {
    return this.constructor.name;
  }
}

/** The message (or config) is malformed: retrying will not help. */
export class InvalidInput extends UdfError {
  get kind() {
    return 'invalid-input';
  }
}

/** Anything else that went wrong inside the UDF. */
export class Failed extends UdfError {}

function bytes(value) {
  if (value === null || value === undefined) return value;
  if (typeof value === 'string') return encoder.encode(value);
  if (value instanceof Uint8Array) return value;
  if (Array.isArray(value) || ArrayBuffer.isView(value) || value instanceof ArrayBuffer) {
    return new Uint8Array(value);
  }
  throw new Failed(`expected bytes or a string, found ${typeof value}`);
}

/**
 * One record: `key` (Uint8Array or undefined), `value` (Uint8Array), `headers` (an array of
 * `[name, Uint8Array]`), `timestampMs` (a BigInt or undefined). The `with*` helpers return a
 * new message and keep what they do not touch.
 */
export class Message {
  constructor(value = new Uint8Array(), { key, headers = [], timestampMs } = {}) {
    this.key = bytes(key);
    this.value = bytes(value);
    this.headers = headers.map(([name, v]) => [String(name), bytes(v)]);
    this.timestampMs = timestampMs;
  }

  /** The value as UTF-8 text, or InvalidInput. */
  text() {
    try {
      return decoder.decode(this.value);
    } catch (err) {
      throw new InvalidInput(`value is not UTF-8 text: ${err.message}`);
    }
  }

  /** The value parsed as JSON, or InvalidInput with the parser's reason. */
  json() {
    const text = this.text();
    try {
      return JSON.parse(text);
    } catch (err) {
      throw new InvalidInput(`value is not JSON: ${err.message}`);
    }
  }

  /** This message with its value replaced (a string is encoded as UTF-8). */
  withValue(value) {
    return new Message(value, this);
  }

  /** This message with its value replaced by `document` as compact JSON. */
  withJson(document) {
    let text;
    try {
      text = JSON.stringify(document);
    } catch (err) {
      throw new Failed(`cannot encode JSON: ${err.message}`);
    }
    if (text === undefined) throw new Failed('cannot encode JSON: nothing to encode');
    return this.withValue(text);
  }

  /** This message with its key set. */
  withKey(key) {
    return new Message(this.value, { ...this, key });
  }

  /** This message with one more header. */
  withHeader(name, value) {
    return new Message(this.value, { ...this, headers: [...this.headers, [name, value]] });
  }

  /** The value of the first header called `name`, or undefined. */
  header(name) {
    const found = this.headers.find(([n]) => n === name);
    return found ? found[1] : undefined;
  }
}

/**
 * The `config` table a pipeline gives a UDF (`[transforms.NAME.config]`). Every value
 * arrives as a string; the typed lookups throw InvalidInput naming the key and the value
 * when it does not parse.
 */
export class Config {
  constructor(entries = []) {
    this.entries = (Array.isArray(entries) ? entries : Object.entries(entries)).map(
      ([k, v]) => [String(k), String(v)],
    );
  }

  /** The raw value of `key` (the last one wins when a key repeats), or `fallback`. */
  get(key, fallback = undefined) {
    for (let i = this.entries.length - 1; i >= 0; i--) {
      if (this.entries[i][0] === key) return this.entries[i][1];
    }
    return fallback;
  }

  /** The raw value of `key`, or InvalidInput saying it is missing. */
  require(key) {
    const value = this.get(key);
    if (value === undefined) throw new InvalidInput(`config: missing required key \`${key}\``);
    return value;
  }

  /** `key` as an integer (`fallback` when absent and one is given). */
  getInt(key, fallback = undefined) {
    return this.#typed(key, fallback, 'an integer', (raw) =>
      /^[+-]?\d+$/.test(raw) ? Number(raw) : undefined,
    );
  }

  /** `key` as a number (`fallback` when absent and one is given). */
  getFloat(key, fallback = undefined) {
    return this.#typed(key, fallback, 'a number', (raw) => {
      const n = Number(raw);
      return raw !== '' && !Number.isNaN(n) ? n : undefined;
    });
  }

  /** `key` as a boolean: true/false, yes/no, on/off, 1/0. */
  getBool(key, fallback = undefined) {
    return this.#typed(key, fallback, 'true or false', (raw) => {
      const lowered = raw.toLowerCase();
      if (['true', 'yes', 'on', '1'].includes(lowered)) return true;
      if (['false', 'no', 'off', '0'].includes(lowered)) return false;
      return undefined;
    });
  }

  #typed(key, fallback, expected, parse) {
    const raw = fallback === undefined ? this.require(key) : this.get(key);
    if (raw === undefined) return fallback;
    const value = parse(raw.trim());
    if (value === undefined) {
      throw new InvalidInput(
        `config: key \`${key}\` = ${JSON.stringify(raw)} is not valid: expected ${expected}`,
      );
    }
    return value;
  }
}

let hostLog = (level, message) => console.error(`[${level}] ${message}`);

/** Logs through the host's `tracing`, tagged with this UDF's name. */
export function log(level, message) {
  hostLog(level, String(message));
}

function asError(err) {
  if (err instanceof UdfError) return { tag: err.kind, val: err.message };
  const name = err && err.name ? err.name : typeof err;
  const text = err && err.message !== undefined ? err.message : String(err);
  return { tag: 'failed', val: `${name}: ${text}` };
}

function outputs(result) {
  if (result === null || result === undefined) return [];
  const list = Array.isArray(result) ? result : [result];
  return list.map((m) => {
    if (!(m instanceof Message)) {
      throw new Failed('process must return null, a Message or an array of Messages');
    }
    return { key: m.key, value: m.value, headers: m.headers, timestampMs: m.timestampMs };
  });
}

/** A WIT `value` as a JavaScript value (an INTEGER as a number when it is exact). */
function fromValue(value) {
  switch (value.tag) {
    case 'null':
      return null;
    case 'integer': {
      const n = Number(value.val);
      return Number.isSafeInteger(n) ? n : value.val;
    }
    default:
      return value.val;
  }
}

/** A JavaScript value as a WIT `value`. */
function toValue(value) {
  if (value === null || value === undefined) return { tag: 'null' };
  if (typeof value === 'boolean') return { tag: 'boolean', val: value };
  if (typeof value === 'bigint') return { tag: 'integer', val: value };
  if (typeof value === 'number') return { tag: 'double', val: value };
  if (typeof value === 'string') return { tag: 'text', val: value };
  throw new Failed(
    `call returned ${typeof value}: return null, a boolean, number, BigInt or string`
  );
}

/**
 * The `init`, `process` and `scalar.call` exports of the `sluice:udf` world, running
 * `UdfClass`; the entry `sluice udf build` generates calls it (tests can too). `log` is the
 * host's.
 */
export function exportUdf(UdfClass, log = undefined) {
  if (log) hostLog = log;
  let udf = null;
  return {
    init(config) {
      try {
        const instance = new UdfClass();
        if (instance.init) instance.init(new Config(config));
        udf = instance;
      } catch (err) {
        throw asError(err);
      }
    },
    process(batch) {
      if (udf === null) {
        return batch.map(() => ({
          tag: 'err',
          val: { tag: 'failed', val: 'process called before a successful init' },
        }));
      }
      return batch.map((raw) => {
        try {
          const message = new Message(raw.value, raw);
          return { tag: 'ok', val: outputs(udf.process(message)) };
        } catch (err) {
          return { tag: 'err', val: asError(err) };
        }
      });
    },
    call(functionName, rows) {
      if (udf === null) {
        return rows.map(() => ({
          tag: 'err',
          val: { tag: 'failed', val: 'call called before a successful init' },
        }));
      }
      return rows.map((row) => {
        try {
          if (!udf.call) throw new InvalidInput(`no scalar function ${functionName} in this UDF`);
          return { tag: 'ok', val: toValue(udf.call(functionName, row.map(fromValue))) };
        } catch (err) {
          return { tag: 'err', val: asError(err) };
        }
      });
    },
  };
}
