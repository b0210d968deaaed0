"""The unit test, on plain CPython: python3 -m unittest (with the SDK on PYTHONPATH)."""

import unittest

from app import UnitConvert
from sluice_udf import Config, InvalidInput, Message


class UnitConvertTest(unittest.TestCase):
    def test_converts_and_keeps_other_fields(self):
        udf = UnitConvert()
        udf.init(Config())
        out = udf.process(Message(b'{"sensor":"a","celsius":21.5}'))
        self.assertEqual(out.value, b'{"fahrenheit":70.7,"sensor":"a"}')

    def test_a_missing_field_is_invalid_input(self):
        udf = UnitConvert()
        udf.init(Config({"field": "temp"}))
        with self.assertRaisesRegex(InvalidInput, "no number in field `temp`"):
            udf.process(Message(b'{"celsius":1}'))


if __name__ == "__main__":
    unittest.main()
