"""Example UDF (map) in Python: `{"celsius": 21.5, ...}` becomes `{"fahrenheit": 70.7, ...}`.
Config: `field` (default `celsius`) names the input field. The same behaviour and golden
samples as the Rust `unit-convert`."""

import math

from sluice_udf import Config, InvalidInput, Message, Udf, export


def round_half_away(value):
    """Rounds like Rust's f64::round (halves away from zero), not Python's banker's round."""
    return math.copysign(math.floor(abs(value) + 0.5), value)


class UnitConvert(Udf):
    def init(self, config: Config) -> None:
        self.field = config.get("field", "celsius")

    def process(self, message: Message):
        doc = message.json()
        celsius = doc.pop(self.field, None) if isinstance(doc, dict) else None
        if isinstance(celsius, bool) or not isinstance(celsius, (int, float)):
            raise InvalidInput(f"no number in field `{self.field}`")
        fahrenheit = (celsius * 9.0 / 5.0 + 32.0) * 100.0
        doc["fahrenheit"] = round_half_away(fahrenheit) / 100.0
        return message.with_json(doc, sort_keys=True)


WitWorld = export(UnitConvert)
