"""A deliberately hostile Python guest, for the sandbox tests (like the Rust `hostile`): each
record's value names an attack, any other value is echoed. The `init` config key attacks
instantiation: `fail` (InvalidInput), `raise` (an uncaught ZeroDivisionError), `loop`
(never returns), `print` (writes to stdout and stderr, then works)."""

import sys
import time

from sluice_udf import Config, InvalidInput, Message, Udf, export


class Hostile(Udf):
    def init(self, config: Config) -> None:
        attack = config.get("init")
        if attack == "fail":
            raise InvalidInput("hostile init refused on purpose")
        if attack == "raise":
            print(1 / 0)
        if attack == "loop":
            while True:
                pass
        if attack == "print":
            print("hostile init prints to stdout")
            print("hostile init prints to stderr", file=sys.stderr)

    def process(self, message: Message):
        value = message.value
        if value == b"loop":
            while True:
                pass
        if value == b"alloc":
            hoard = []
            while True:
                hoard.append(bytearray(1 << 20))
        if value == b"raise":
            raise KeyError("hostile guest raised on purpose")
        if value == b"sleep":
            time.sleep(30)
        if value == b"nap":
            time.sleep(0.001)
        if value == b"recurse":
            def down(n):
                return down(n + 1)
            down(0)
        return message


WitWorld = export(Hostile)
