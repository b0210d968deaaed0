"""The per-language UDF benchmark, run by `cargo xtask bench languages`: the same UDFs in Rust,
Python (componentize-py) and JavaScript (componentize-js), measured by the same host in one run.

- Throughput and per-record cost: `sluice udf bench` (batches of 64, after a warm-up) of the
  unit converter in Rust, Python and JS on 1000 JSON readings, and of the ECG anomaly scorer in
  Rust and pure Python on the ECG test events.
- Cold start: `sluice udf test` of one record with an empty compiled-artifact cache (process
  start, Cranelift compile, instantiate, init, one call); cached start: the same again, the
  compiled artifact now on disk.
- Hot reload: `sluice run` with an MQTT source on Mosquitto (default settings) and the module
  in its UDF directory, records trickling in every 10 ms; a new version (the same component
  with a different custom section, so new bytes that must be compiled) is written into the
  directory, and the time to the host's `udf swapped between batches` is measured. Median of
  RELOADS reloads.

Usage: run.py --sluice BIN --udf-dir DIR --data DIR [--reloads N]
"""

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import paho.mqtt.client as mqtt

CONVERTERS = [("rust", "unit-convert"), ("python", "unit-convert-py"), ("javascript", "unit-convert-js")]
SCORERS = [("rust", "anomaly"), ("python", "anomaly-py")]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, limit=30):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on {port}")


def udf_bench(sluice, udf_dir, module, inputs):
    out = subprocess.run(
        [sluice, "udf", "bench", module, "--udf-dir", udf_dir, "--input", inputs],
        capture_output=True, text=True, check=True,
    ).stdout
    rate = p50 = None
    for line in out.splitlines():
        if line.startswith("throughput:"):
            rate = float(line.split()[1])
        if line.startswith("per record:"):
            p50 = float(line.split()[3])
    return rate, p50


def start_times(sluice, udf_dir, module, one_line):
    cache = tempfile.mkdtemp(prefix="sluice-bench-cache-")
    env = dict(os.environ, SLUICE_CACHE_DIR=cache)
    times = []
    for _ in range(2):
        began = time.monotonic()
        subprocess.run(
            [sluice, "udf", "test", module, "--udf-dir", udf_dir, "--input", one_line],
            capture_output=True, check=True, env=env,
        )
        times.append(time.monotonic() - began)
    shutil.rmtree(cache, ignore_errors=True)
    return times


def with_custom_section(wasm, n):
    """The component with one more custom section (new bytes, same behaviour)."""
    name = b"sluice-bench"
    payload = str(n).encode()
    body = bytes([len(name)]) + name + payload
    size, leb = len(body), bytearray()
    while True:
        byte = size & 0x7F
        size >>= 7
        leb.append(byte | (0x80 if size else 0))
        if not size:
            break
    return wasm + b"\x00" + bytes(leb) + body


def hot_reloads(sluice, module_path, reloads, broker_port):
    work = tempfile.mkdtemp(prefix="sluice-bench-reload-")
    udfs = os.path.join(work, "udfs")
    os.makedirs(udfs)
    original = open(module_path, "rb").read()
    shutil.copy(module_path, os.path.join(udfs, "hot.wasm"))
    pipeline = os.path.join(work, "hot.toml")
    with open(pipeline, "w") as f:
        f.write(f"""
[sources.input]
type = "mqtt"
broker.url = "mqtt://127.0.0.1:{broker_port}"
topics = ["hot/in"]

[transforms.hot]
type = "udf"
inputs = ["input"]
module = "hot"

[sinks.output]
type = "mqtt"
inputs = ["hot"]
broker.url = "mqtt://127.0.0.1:{broker_port}"
topic = "hot/out"
""")
    env = dict(os.environ, SLUICE_LOG="info", SLUICE_CACHE_DIR=os.path.join(work, "cache"))
    host = subprocess.Popen(
        [sluice, "run", pipeline, "--udf-dir", udfs, "--ready-file", os.path.join(work, "ready")],
        stderr=subprocess.PIPE, text=True, env=env,
    )
    swaps = []

    def read_log():
        for line in host.stderr:
            if "udf swapped between batches" in line:
                swaps.append(time.monotonic())

    threading.Thread(target=read_log, daemon=True).start()
    stop = threading.Event()

    def trickle():
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        client.connect("127.0.0.1", broker_port)
        client.loop_start()
        n = 0
        while not stop.is_set():
            client.publish("hot/in", f'{{"sensor":"s{n}","celsius":{n}}}', qos=1)
            n += 1
            time.sleep(0.01)
        client.loop_stop()
        client.disconnect()

    deadline = time.monotonic() + 60
    while not os.path.exists(os.path.join(work, "ready")):
        if time.monotonic() > deadline or host.poll() is not None:
            sys.exit(f"{module_path}: sluice run never became ready")
        time.sleep(0.02)
    publisher = threading.Thread(target=trickle, daemon=True)
    publisher.start()
    took = []
    for n in range(reloads):
        before = len(swaps)
        staged = os.path.join(udfs, ".hot.wasm.tmp")
        with open(staged, "wb") as f:
            f.write(with_custom_section(original, n))
        began = time.monotonic()
        os.rename(staged, os.path.join(udfs, "hot.wasm"))
        deadline = began + 120
        while len(swaps) == before and time.monotonic() < deadline:
            time.sleep(0.005)
        if len(swaps) == before:
            sys.exit(f"{module_path}: no swap within 120 s")
        took.append(swaps[before] - began)
    stop.set()
    publisher.join()
    host.terminate()
    host.wait(30)
    shutil.rmtree(work, ignore_errors=True)
    return statistics.median(took)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sluice", required=True)
    parser.add_argument("--udf-dir", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--reloads", type=int, default=3)
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="sluice-bench-languages-")
    readings = os.path.join(work, "readings.txt")
    with open(readings, "w") as f:
        for n in range(1000):
            f.write(f'{{"sensor":"s{n}","celsius":{n % 80 - 20}.5}}\n')
    one = os.path.join(work, "one.txt")
    with open(one, "w") as f:
        f.write('{"sensor":"a","celsius":21.5}\n')
    ecg = os.path.join(args.data, "ecg_discord_test.msgs")
    ecg_one = os.path.join(work, "ecg-one.txt")
    with open(ecg) as src, open(ecg_one, "w") as f:
        f.write(src.readline())

    port = free_port()
    broker = subprocess.Popen(["mosquitto", "-p", str(port)], stderr=subprocess.DEVNULL)
    wait_for_port(port)

    rows = []
    for kind, modules, inputs, first in [
        ("unit converter", CONVERTERS, readings, one),
        ("ECG anomaly scorer", SCORERS, ecg, ecg_one),
    ]:
        for language, module in modules:
            rate, p50 = udf_bench(args.sluice, args.udf_dir, module, inputs)
            cold, cached = start_times(args.sluice, args.udf_dir, module, first)
            path = os.path.join(args.udf_dir, module + ".wasm")
            size = os.path.getsize(path) / 1e6
            reload = hot_reloads(args.sluice, path, args.reloads, port) if kind == "unit converter" else None
            rows.append((kind, language, size, rate, p50, cold, cached, reload))
            print(f"measured {kind} / {language}", file=sys.stderr)
    broker.terminate()
    shutil.rmtree(work, ignore_errors=True)

    print("| UDF | language | size | records/s | per record (p50) | vs Rust | cold start | cached start | hot reload |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    rust_rate = {}
    for kind, language, size, rate, p50, cold, cached, reload in rows:
        if language == "rust":
            rust_rate[kind] = rate
        ratio = rust_rate[kind] / rate if rate else float("nan")
        reload_text = f"{reload:.2f} s" if reload is not None else "n/a"
        print(
            f"| {kind} | {language} | {size:.1f} MB | {rate:,.0f} | {p50:.1f} µs | "
            f"{'1x' if language == 'rust' else f'{ratio:.0f}x slower'} | {cold:.2f} s | {cached:.2f} s | {reload_text} |"
        )


if __name__ == "__main__":
    main()
