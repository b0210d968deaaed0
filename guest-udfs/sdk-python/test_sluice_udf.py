"""The Python SDK's own tests, on plain CPython: python3 -m unittest (in this folder)."""

import unittest

from sluice_udf import Config, Failed, InvalidInput, Message, Udf, export
from sluice_udf import _native


class ConfigTest(unittest.TestCase):
    def test_lookups_name_the_key_and_the_value(self):
        config = Config([("n", "7"), ("x", "1.5"), ("b", "yes"), ("n", "8"), ("bad", "seven")])
        self.assertEqual(config.get("n"), "8", "the last one wins")
        self.assertEqual(config.get_int("n"), 8)
        self.assertEqual(config.get_float("x"), 1.5)
        self.assertIs(config.get_bool("b"), True)
        self.assertEqual(config.get_int("missing", 3), 3)
        with self.assertRaisesRegex(InvalidInput, r"config: key `bad` = 'seven' is not valid: expected an integer"):
            config.get_int("bad")
        with self.assertRaisesRegex(InvalidInput, r"config: missing required key `gone`"):
            config.get_int("gone")
        with self.assertRaisesRegex(InvalidInput, r"missing required key `gone`"):
            config.require("gone")


class MessageTest(unittest.TestCase):
    def test_builders_keep_what_they_do_not_touch(self):
        m = Message("a", key=b"k", headers=[("h", b"1")], timestamp_ms=5)
        out = m.with_value("b").with_header("h2", "2")
        self.assertEqual(out.value, b"b")
        self.assertEqual(out.key, b"k")
        self.assertEqual(out.timestamp_ms, 5)
        self.assertEqual(out.header("h"), b"1")
        self.assertEqual(out.header("h2"), b"2")
        self.assertIsNone(out.header("none"))
        self.assertEqual(m.value, b"a", "the original is unchanged")

    def test_text_and_json_errors_are_invalid_input(self):
        with self.assertRaisesRegex(InvalidInput, "not UTF-8"):
            Message(b"\xff").text()
        with self.assertRaisesRegex(InvalidInput, "not JSON"):
            Message(b"{").json()
        self.assertEqual(Message(b'{"a":1}').json(), {"a": 1})
        self.assertEqual(Message().with_json({"b": 1, "a": [1.5]}).value, b'{"b":1,"a":[1.5]}')
        with self.assertRaisesRegex(Failed, "cannot encode JSON"):
            Message().with_json(float("nan"))


class Shape(Udf):
    def init(self, config):
        self.mode = config.require("mode")

    def process(self, message):
        text = message.text()
        if text == "drop":
            return None
        if text == "split":
            return [message.with_value("a"), message.with_value("b")]
        if text == "invalid":
            raise InvalidInput("bad record")
        if text == "crash":
            return {}["missing"]
        if text == "wrong":
            return 42
        return message.with_value(text + self.mode)

    def call(self, function, args):
        if function == "TWICE":
            (x,) = args
            return None if x is None else x * 2
        if function == "KIND":
            return type(args[0]).__name__
        if function == "BAD":
            return [1]
        return super().call(function, args)


class ExportTest(unittest.TestCase):
    def world(self, config):
        world = export(Shape)()
        world.init(config)
        return world

    def test_zero_one_several_or_an_error_per_record(self):
        world = self.world([("mode", "!")])
        raw = [_native.Message(None, v.encode(), [], None) for v in ["x", "drop", "split", "invalid", "crash", "wrong"]]
        results = world.process(raw)
        self.assertEqual(len(results), 6)
        self.assertEqual([m.value for m in results[0].value], [b"x!"])
        self.assertEqual(results[1].value, [])
        self.assertEqual([m.value for m in results[2].value], [b"a", b"b"])
        self.assertEqual(results[3].value, _native.UdfError_InvalidInput("bad record"))
        self.assertEqual(results[4].value, _native.UdfError_Failed("KeyError: 'missing'"))
        self.assertIn("process returned int", results[5].value.value)

    def test_a_failing_init_raises_its_reason(self):
        with self.assertRaises(_native.Err) as caught:
            self.world([])
        self.assertEqual(caught.exception.value, _native.UdfError_InvalidInput("config: missing required key `mode`"))

    def test_process_before_init_fails_every_record(self):
        world = export(Shape)()
        results = world.process([_native.Message(None, b"x", [], None)])
        self.assertEqual(results[0].value, _native.UdfError_Failed("process called before a successful init"))

    def test_scalar_calls_one_result_per_row_values_both_ways(self):
        world = self.world([("mode", "!")])
        scalar = type(world).Scalar()
        V = _native
        rows = [
            [V.Value_Integer(21)],
            [V.Value_Double(1.25)],
            [V.Value_Text("ab")],
            [V.Value_Null()],
        ]
        results = scalar.call("TWICE", rows)
        self.assertEqual(
            [r.value for r in results],
            [V.Value_Integer(42), V.Value_Double(2.5), V.Value_Text("abab"), V.Value_Null()],
        )
        kinds = scalar.call("KIND", [[V.Value_Boolean(True)], [V.Value_Integer(1)]])
        self.assertEqual([r.value for r in kinds], [V.Value_Text("bool"), V.Value_Text("int")])
        self.assertIn("call returned list", scalar.call("BAD", [[]])[0].value.value)
        self.assertEqual(
            scalar.call("NOPE", [[]])[0].value,
            V.UdfError_InvalidInput("no scalar function NOPE in this UDF"),
        )
        # componentize-py needs the interface's class at the app module's top level.
        self.assertTrue(callable(globals()["Scalar"]().call), "export() defines Scalar there")


if __name__ == "__main__":
    unittest.main()
