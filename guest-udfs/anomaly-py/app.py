"""The ECG anomaly UDF in pure Python (no numpy): scores each `EVENTID,v1#...#v210` event with
the exact H2O autoencoder of the original KSQL demo and emits `{"eventid":N,"anomaly_val":MSE}`
keyed by EVENTID, like the Rust `anomaly` module, so users see the cost of Python beside Rust.

H2O's arithmetic, in float64: inputs normalised, four tanh layers with each dot product summed
in eight interleaved partial sums as H2O's POJO does, `tanh(z) = 1 - 2 / (1 + exp(2z))`, the
output denormalised, the mean squared reconstruction error. Thresholding is the pipeline's job."""

import math

import model
from sluice_udf import Config, InvalidInput, Message, Udf, export

INPUTS = model.LAYERS[0]
LAYERS = list(zip(model.WEIGHTS, model.BIASES))


def parse(payload):
    """(event id, readings) of `EVENTID,v1#...#v210`; whitespace around numbers is allowed."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InvalidInput(f"payload is not UTF-8 text: {err}") from None
    if not text.strip():
        raise InvalidInput("empty payload")
    id_text, comma, rest = text.partition(",")
    if not comma:
        raise InvalidInput(
            f"missing EVENTID: expected `EVENTID,v1#v2#...#v{INPUTS}`, found no comma"
        )
    if not id_text.strip():
        raise InvalidInput("missing EVENTID before the comma")
    try:
        event_id = int(id_text.strip())
    except ValueError:
        raise InvalidInput(f"EVENTID {id_text!r} is not an integer") from None
    return event_id, parse_readings(rest, f"event {event_id}: ")


def parse_readings(text, where=""):
    """The readings of `v1#...#v210`; errors start with `where`."""
    fields = text.split("#")
    if len(fields) != INPUTS:
        raise InvalidInput(
            f"{where}expected {INPUTS} readings separated by '#', found {len(fields)}"
        )
    readings = []
    for i, field in enumerate(fields):
        try:
            value = float(field)
        except ValueError:
            raise InvalidInput(
                f"{where}reading {i + 1} of {INPUTS} is not a number: {field!r}"
            ) from None
        if not math.isfinite(value):
            raise InvalidInput(f"{where}reading {i + 1} of {INPUTS} is not finite: {field!r}")
        readings.append(value)
    return readings


def dense_tanh(weights, biases, x):
    """tanh(W x + b), each dot product in H2O's order: eight interleaved partial sums over
    whole blocks of eight, added as ((p0+p1)+p2)+p3 and ((p4+p5)+p6)+p7, then the tail columns,
    then the bias."""
    columns = len(x)
    blocks = columns - columns % 8
    out = []
    exp = math.exp
    for row, bias in zip(weights, biases):
        p0 = p1 = p2 = p3 = p4 = p5 = p6 = p7 = 0.0
        for c in range(0, blocks, 8):
            p0 += row[c] * x[c]
            p1 += row[c + 1] * x[c + 1]
            p2 += row[c + 2] * x[c + 2]
            p3 += row[c + 3] * x[c + 3]
            p4 += row[c + 4] * x[c + 4]
            p5 += row[c + 5] * x[c + 5]
            p6 += row[c + 6] * x[c + 6]
            p7 += row[c + 7] * x[c + 7]
        p0 = ((p0 + p1) + p2) + p3
        p4 = ((p4 + p5) + p6) + p7
        z = p0 + p4
        for c in range(blocks, columns):
            z += row[c] * x[c]
        z += bias
        out.append(1.0 - 2.0 / (1.0 + exp(2.0 * z)))
    return out


def reconstruction_mse(readings):
    """H2O's anomaly score of 210 readings, in the original units."""
    x = [
        0.0 if v != v else (v - sub) * mul
        for v, sub, mul in zip(readings, model.INPUT_SUB, model.INPUT_MUL)
    ]
    for weights, biases in LAYERS:
        x = dense_tanh(weights, biases, x)
    total = 0.0
    for v, a, sub, mul in zip(readings, x, model.INPUT_SUB, model.INPUT_MUL):
        d = v - (a / mul + sub)
        total += d * d
    return total / INPUTS


def checked_mse(readings, where=""):
    """The score of `readings`, or InvalidInput when it is not finite."""
    try:
        mse = reconstruction_mse(readings)
    except OverflowError:
        mse = math.inf
    if not math.isfinite(mse):
        raise InvalidInput(f"{where}readings out of range: the reconstruction error is {mse}")
    return mse


def score(payload):
    """(key, JSON) of one payload, or InvalidInput naming the event and the reason."""
    event_id, readings = parse(payload)
    mse = checked_mse(readings, f"event {event_id}: ")
    return str(event_id), f'{{"eventid":{event_id},"anomaly_val":{mse!r}}}'


class Anomaly(Udf):
    def init(self, config: Config) -> None:
        if config.entries:
            key = config.entries[0][0]
            raise InvalidInput(f"config: the anomaly UDF takes no keys, found `{key}`")

    def process(self, message: Message):
        key, json = score(message.value)
        return message.with_key(key).with_value(json)

    def call(self, function, args):
        """SQL's `ANOMALY(SENSORINPUT)`: the score of the readings string, a DOUBLE."""
        if function.upper() != "ANOMALY":
            raise InvalidInput(f"no scalar function {function} in the anomaly UDF (it offers ANOMALY)")
        if len(args) != 1:
            raise InvalidInput(f"ANOMALY takes one argument (the readings), not {len(args)}")
        (readings,) = args
        if readings is None:
            return None
        if not isinstance(readings, str):
            raise InvalidInput(f"ANOMALY takes the readings as VARCHAR, not {type(readings).__name__}")
        return checked_mse(parse_readings(readings))


WitWorld = export(Anomaly)
