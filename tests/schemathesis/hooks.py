"""Schemathesis hooks for Sluice's admin API (loaded through SCHEMATHESIS_HOOKS).

The API takes two bodies schemathesis has no serializer for: a pipeline as TOML text and a
UDF as Wasm bytes. Both go on the wire as generated (text as UTF-8, bytes as they are).
"""

import schemathesis

schemathesis.serializer.alias("application/toml", "text/plain")
schemathesis.serializer.alias("application/wasm", "application/octet-stream")
