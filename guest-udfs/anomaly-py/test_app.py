"""Parity with H2O on the ECG test data, natively: python3 -m unittest (with the SDK on
PYTHONPATH, as `cargo xtask test` runs it)."""

import unittest
from pathlib import Path

import app
import gen_model

DATA = Path(__file__).resolve().parent.parent.parent / "tests" / "data"


class ParityTest(unittest.TestCase):
    def test_scores_match_h2o_within_1e_12(self):
        expected = {}
        for line in (DATA / "ecg_test_expected_mse.tsv").read_text().splitlines():
            event, mse = line.split("\t")
            expected[event] = float(mse)
        messages = (DATA / "ecg_discord_test.msgs").read_text().splitlines()
        self.assertEqual(len(messages), len(expected))
        for line in messages:
            key, json = app.score(line.encode())
            got = float(json.split('"anomaly_val":')[1].rstrip("}"))
            want = expected[key]
            self.assertLessEqual(abs(got - want) / want, 1e-12, f"event {key}")

    def test_bad_payloads_name_the_event(self):
        with self.assertRaisesRegex(app.InvalidInput, "event 7: expected 210 readings"):
            app.score(b"7,1#2#3")
        with self.assertRaisesRegex(app.InvalidInput, "event 7: reading 2 of 210 is not a number"):
            app.score(b"7,1#x" + b"#1" * 208)

    def test_the_sql_function_scores_the_readings_alone(self):
        line = (DATA / "ecg_discord_test.msgs").read_text().splitlines()[0]
        key, json = app.score(line.encode())
        _, readings = line.split(",", 1)
        mse = app.Anomaly().call("ANOMALY", [" " + readings])
        self.assertEqual(json, f'{{"eventid":{key},"anomaly_val":{mse!r}}}')
        self.assertIsNone(app.Anomaly().call("anomaly", [None]))
        with self.assertRaisesRegex(app.InvalidInput, "not int"):
            app.Anomaly().call("ANOMALY", [3])
        with self.assertRaisesRegex(app.InvalidInput, "no scalar function OTHER"):
            app.Anomaly().call("OTHER", [])

    def test_model_py_is_generated_from_the_json(self):
        generated = (Path(gen_model.__file__).parent / "model.py").read_text()
        self.assertEqual(generated, gen_model.render())


if __name__ == "__main__":
    unittest.main()
