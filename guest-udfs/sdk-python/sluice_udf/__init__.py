"""The Sluice UDF SDK for Python: write a WebAssembly UDF as one class.

A UDF is a subclass of :class:`Udf` with ``init(config)`` and ``process(message)``;
``WitWorld = export(MyUdf)`` wires it to the ``sluice:udf`` world (the contract in the
repository's ``wit/`` folder), and ``sluice udf build`` turns the folder into a component
with componentize-py. The host calls ``init`` once per instance with the pipeline's
``config`` table, then ``process`` once per message, in order.

A UDF can also offer scalar functions to SQL (``SELECT ANOMALY(SENSORINPUT) ...``): define
``call(self, function, args)``, which gets the function's name (upper-cased) and one row of
arguments as Python values (``None``, ``bool``, ``int``, ``float``, ``str``) and returns one.

``process`` returns ``None`` or ``[]`` (filter the message out), one :class:`Message` (map)
or a list of them (flat-map). Raise :class:`InvalidInput` when the message is malformed
(retrying will not help) or :class:`Failed` for anything else; either fails that message
alone, and any other exception counts as :class:`Failed` with its type and text.

The same code runs natively (plain CPython, for unit tests) and in the component.
"""

import json as _json
import sys as _sys

__version__ = "0.1.0"

try:  # Inside the component: the bindings componentize-py generates from the WIT.
    from wit_world.imports import types as _types
    from wit_world.imports import host as _host
    from componentize_py_types import Ok as _Ok, Err as _Err

    try:  # Built for the `scalar-udf` world (what `sluice udf build` does).
        from wit_world.exports import scalar as _scalar
    except ImportError:  # pragma: no cover - a component of the plain `udf` world
        _scalar = None
    IN_COMPONENT = True
except ImportError:  # Natively (unit tests): stand-ins with the same shape.
    from . import _native as _types

    _host = _types
    _scalar = _types
    _Ok, _Err = _types.Ok, _types.Err
    IN_COMPONENT = False

__all__ = [
    "Udf",
    "Message",
    "Config",
    "UdfError",
    "InvalidInput",
    "Failed",
    "export",
    "log",
    "Level",
]

Level = _host.Level


def log(level, message):
    """Logs through the host's ``tracing``, tagged with this UDF's name.

    ``level`` is a :data:`Level` or one of ``"trace"``, ``"debug"``, ``"info"``,
    ``"warn"``, ``"error"``.
    """
    if isinstance(level, str):
        level = Level[level.upper()]
    _host.log(level, str(message))


class UdfError(Exception):
    """Why a UDF could not process one message (or could not initialise)."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = str(reason)

    def _wit(self):
        return _types.UdfError_Failed(self.reason)


class InvalidInput(UdfError):
    """The message (or config) is malformed: retrying will not help."""

    def _wit(self):
        return _types.UdfError_InvalidInput(self.reason)


class Failed(UdfError):
    """Anything else that went wrong inside the UDF."""


class Message(_types.Message):
    """One record: ``key`` (bytes or None), ``value`` (bytes), ``headers`` (a list of
    ``(name, bytes)``), ``timestamp_ms`` (int or None). The ``with_*`` helpers return a new
    message and keep what they do not touch."""

    def __init__(self, value=b"", key=None, headers=None, timestamp_ms=None):
        super().__init__(key, _bytes(value), list(headers or []), timestamp_ms)

    def text(self):
        """The value as UTF-8 text, or :class:`InvalidInput`."""
        try:
            return self.value.decode("utf-8")
        except UnicodeDecodeError as err:
            raise InvalidInput(f"value is not UTF-8 text: {err}") from None

    def json(self):
        """The value parsed as JSON, or :class:`InvalidInput` with the parser's reason."""
        try:
            return _json.loads(self.value)
        except (ValueError, UnicodeDecodeError) as err:
            raise InvalidInput(f"value is not JSON: {err}") from None

    def with_value(self, value):
        """This message with its value replaced (``str`` is encoded as UTF-8)."""
        return Message(value, self.key, self.headers, self.timestamp_ms)

    def with_json(self, document, sort_keys=False):
        """This message with its value replaced by ``document`` as compact JSON."""
        try:
            encoded = _json.dumps(
                document, separators=(",", ":"), sort_keys=sort_keys, allow_nan=False
            )
        except (TypeError, ValueError) as err:
            raise Failed(f"cannot encode JSON: {err}") from None
        return self.with_value(encoded)

    def with_key(self, key):
        """This message with its key set."""
        return Message(self.value, _bytes(key), self.headers, self.timestamp_ms)

    def with_header(self, name, value):
        """This message with one more header."""
        headers = list(self.headers) + [(str(name), _bytes(value))]
        return Message(self.value, self.key, headers, self.timestamp_ms)

    def header(self, name):
        """The value of the first header called ``name``, or None."""
        for header_name, value in self.headers:
            if header_name == name:
                return value
        return None


class Config:
    """The ``config`` table a pipeline gives a UDF (``[transforms.NAME.config]``).

    Every value arrives as a string; the typed lookups raise :class:`InvalidInput` naming
    the key and the value when it does not parse."""

    def __init__(self, entries=()):
        if isinstance(entries, dict):
            entries = entries.items()
        self.entries = [(str(k), str(v)) for k, v in entries]

    def get(self, key, default=None):
        """The raw value of ``key`` (the last one wins when a key repeats), or ``default``."""
        for k, v in reversed(self.entries):
            if k == key:
                return v
        return default

    def require(self, key):
        """The raw value of ``key``, or :class:`InvalidInput` saying it is missing."""
        value = self.get(key)
        if value is None:
            raise InvalidInput(f"config: missing required key `{key}`")
        return value

    def get_int(self, key, default=None):
        """``key`` as an int (``default`` when absent and a default is given)."""
        return self._typed(key, default, int, "an integer")

    def get_float(self, key, default=None):
        """``key`` as a float (``default`` when absent and a default is given)."""
        return self._typed(key, default, float, "a number")

    def get_bool(self, key, default=None):
        """``key`` as a bool: true/false, yes/no, on/off, 1/0."""
        return self._typed(key, default, _parse_bool, "true or false")

    def _typed(self, key, default, parse, expected):
        raw = self.get(key) if default is not None else self.require(key)
        if raw is None:
            return default
        try:
            return parse(raw.strip())
        except ValueError:
            raise InvalidInput(
                f"config: key `{key}` = {raw!r} is not valid: expected {expected}"
            ) from None


class Udf:
    """Subclass this: ``init(self, config)`` once per instance, then ``process(self,
    message)`` per message."""

    def init(self, config):
        """Builds the UDF from the pipeline's ``config`` (a :class:`Config`). Raising
        refuses the module."""

    def process(self, message):
        """Returns None or ``[]`` (filter), a :class:`Message` (map) or a list (flat-map)."""
        return message

    def call(self, function, args):
        """The scalar function ``function`` (upper-cased, ``ANOMALY``) on one row of ``args``
        (Python values): returns ``None``, a ``bool``, ``int``, ``float`` or ``str``. By
        default there are none."""
        raise InvalidInput(f"no scalar function {function} in this UDF")


def export(udf_class):
    """The ``WitWorld`` class componentize-py exports, running ``udf_class``:
    ``WitWorld = export(MyUdf)`` at the end of ``app.py``."""

    class WitWorld:
        udf = None

        def init(self, config):
            try:
                udf = udf_class()
                udf.init(Config(config))
            except Exception as err:  # noqa: BLE001 - every failure refuses the module
                raise _Err(_as_error(err)._wit()) from None
            WitWorld.udf = udf

        def process(self, batch):
            udf = WitWorld.udf
            if udf is None:
                reason = _types.UdfError_Failed("process called before a successful init")
                return [_Err(reason) for _ in batch]
            out = []
            for raw in batch:
                message = Message(raw.value, raw.key, raw.headers, raw.timestamp_ms)
                try:
                    out.append(_Ok(_outputs(udf.process(message))))
                except Exception as err:  # noqa: BLE001 - an error for this message alone
                    out.append(_Err(_as_error(err)._wit()))
            return out

    class Scalar:
        """The ``sluice:udf/scalar`` export: ``udf_class.call`` per row."""

        def call(self, function, rows):
            udf = WitWorld.udf
            if udf is None:
                reason = _types.UdfError_Failed("call called before a successful init")
                return [_Err(reason) for _ in rows]
            out = []
            for row in rows:
                try:
                    args = [_from_value(v) for v in row]
                    out.append(_Ok(_to_value(udf.call(function, args))))
                except Exception as err:  # noqa: BLE001 - an error for this row alone
                    out.append(_Err(_as_error(err)._wit()))
            return out

    WitWorld.__name__ = WitWorld.__qualname__ = "WitWorld"
    WitWorld.Scalar = Scalar
    # componentize-py takes an exported interface's class from the app module's top level:
    # `WitWorld = export(MyUdf)` defines `Scalar` there too (unless the module has its own).
    _sys._getframe(1).f_globals.setdefault("Scalar", Scalar)
    return WitWorld


def _from_value(value):
    if isinstance(value, _scalar.Value_Null):
        return None
    return value.value


def _to_value(value):
    if value is None:
        return _scalar.Value_Null()
    if isinstance(value, bool):
        return _scalar.Value_Boolean(value)
    if isinstance(value, int):
        return _scalar.Value_Integer(value)
    if isinstance(value, float):
        return _scalar.Value_Double(value)
    if isinstance(value, str):
        return _scalar.Value_Text(value)
    raise Failed(
        f"call returned {type(value).__name__}: return None, a bool, int, float or str"
    )


def _outputs(result):
    if result is None:
        return []
    if isinstance(result, _types.Message):
        return [result]
    if isinstance(result, (list, tuple)):
        for item in result:
            if not isinstance(item, _types.Message):
                raise Failed(f"process returned a list holding {type(item).__name__}, not Message")
        return list(result)
    raise Failed(
        f"process returned {type(result).__name__}: return None, a Message or a list of them"
    )


def _as_error(err):
    if isinstance(err, UdfError):
        return err
    text = str(err)
    reason = f"{type(err).__name__}: {text}" if text else type(err).__name__
    if isinstance(err, MemoryError):
        reason += " (the instance reached its memory cap, `memory_mib`)"
    return Failed(reason)


def _bytes(value):
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode("utf-8")
    return bytes(value)


def _parse_bool(raw):
    lowered = raw.lower()
    if lowered in ("true", "yes", "on", "1"):
        return True
    if lowered in ("false", "no", "off", "0"):
        return False
    raise ValueError(raw)
