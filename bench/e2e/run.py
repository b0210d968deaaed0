"""The end-to-end benchmark, run by `cargo xtask bench e2e`: MQTT (QoS 1) -> ECG anomaly score
-> Kafka, Sluice against a Python bridge (bridge.py) in the same run, on the same servers.

Mosquitto runs with its default configuration (in-flight window 20, queue 1000), tansu is the
Kafka-protocol broker. For each system: a fresh output topic; the system is started and waits
until subscribed; a publisher sends RECORDS sequence-numbered ECG events (EVENTID = sequence
number) as fast as the broker takes them, and a consumer reads the output topic. Throughput is
scores read over the time from the first publish to the last score read; records that never
arrive are counted as lost (a subscriber that acknowledges before it has done its work, and falls
behind, overflows Mosquitto's queue of 1000); latency is per record, from its publish to its score
being read. A second phase publishes at half the throughput just
measured and reports the latency there.

Usage: run.py --sluice BIN --tansu BIN --udf-dir DIR --data FILE --model FILE [--records N]
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

import paho.mqtt.client as mqtt
from confluent_kafka import Consumer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOPIC = "electric-temperature"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, limit=30):
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port}")


def wait_for_file(path, process, limit=60):
    deadline = time.time() + limit
    while not os.path.exists(path):
        if process.poll() is not None:
            raise SystemExit(f"the system under test exited ({process.returncode}) before it was ready")
        if time.time() > deadline:
            raise SystemExit("the system under test was not ready in time")
        time.sleep(0.02)


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


class Servers:
    def __init__(self, tansu, workdir):
        self.mqtt_port = free_port()
        conf = os.path.join(workdir, "mosquitto.conf")
        with open(conf, "w") as f:
            # Only where to listen and who may connect: every other setting is the default.
            f.write(f"user root\nallow_anonymous true\nlistener {self.mqtt_port} 127.0.0.1\n")
        binary = next((p for p in ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"] if os.path.exists(p)), "mosquitto")
        self.mosquitto = subprocess.Popen([binary, "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        kafka_port = free_port()
        url = f"tcp://127.0.0.1:{kafka_port}"
        self.tansu_bin = tansu
        self.tansu = subprocess.Popen(
            [tansu, "broker", "--storage-engine", "memory://tansu/", "--listener-url", url, "--advertised-listener-url", url],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.brokers = f"127.0.0.1:{kafka_port}"
        wait_for_port(self.mqtt_port)
        wait_for_port(kafka_port)

    def create_topic(self, name, partitions=1):
        subprocess.run(
            [self.tansu_bin, "topic", "create", name, "--partitions", str(partitions), "--broker", f"tcp://{self.brokers}"],
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def stop(self):
        for p in (self.mosquitto, self.tansu):
            p.kill()
            p.wait()


class Scores:
    """Reads `EVENTID,MSE` from a topic and notes when each event id arrived."""

    def __init__(self, brokers, topic):
        self.arrived = {}
        self.stop = False
        self.consumer = Consumer(
            {
                "bootstrap.servers": brokers,
                "group.id": f"bench-{topic}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                # Answer fetches at once: the default waits up to 500 ms for more data, which
                # would be most of every latency measured here.
                "fetch.wait.max.ms": 5,
            }
        )
        self.consumer.subscribe([topic])
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop:
            message = self.consumer.poll(0.1)
            if message is None or message.error():
                continue
            now = time.perf_counter()
            event_id = int(message.value().split(b",", 1)[0])
            self.arrived.setdefault(event_id, now)

    def wait(self, ids, quiet=10):
        """Waits until every id arrived, or nothing new came for `quiet` seconds (the rest was
        lost: a subscriber slower than the publisher overflows Mosquitto's queue of 1000)."""
        seen, since = -1, time.time()
        while time.time() - since < quiet:
            got = sum(1 for i in ids if i in self.arrived)
            if got == len(ids):
                return got
            if got != seen:
                seen, since = got, time.time()
            time.sleep(0.05)
        return seen

    def close(self):
        self.stop = True
        self.thread.join()
        self.consumer.close()


def publish(port, events, first_id, count, rate=None):
    """Publishes `count` events (ids from `first_id`) at QoS 1; returns {id: time sent}."""
    sent = {}
    acked = threading.Semaphore(0)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-publisher-{first_id}")
    client.max_inflight_messages_set(100)
    client.max_queued_messages_set(0)
    client.on_publish = lambda *args: acked.release()
    client.connect("127.0.0.1", port)
    client.loop_start()
    started = time.perf_counter()
    for n in range(count):
        if rate:
            delay = started + n / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        event_id = first_id + n
        payload = f"{event_id},{events[n % len(events)]}"
        sent[event_id] = time.perf_counter()
        client.publish(TOPIC, payload, qos=1)
    for _ in range(count):
        acked.acquire(timeout=120)
    client.loop_stop()
    client.disconnect()
    return sent


def measure(name, start, servers, events, records, workdir):
    out_topic = f"scores-{name}"
    servers.create_topic(out_topic)
    ready = os.path.join(workdir, f"{name}.ready")
    process = start(out_topic, ready)
    try:
        wait_for_file(ready, process)
        scores = Scores(servers.brokers, out_topic)
        # Full speed.
        sent = publish(servers.mqtt_port, events, 0, records)
        published_in = max(sent.values()) - min(sent.values())
        got = scores.wait(list(sent))
        if got == 0:
            raise SystemExit(f"{name}: no score arrived")
        delivered = [i for i in sent if i in scores.arrived]
        first, last = min(sent.values()), max(scores.arrived[i] for i in delivered)
        rate = got / (last - first)
        latencies = [scores.arrived[i] - sent[i] for i in delivered]
        # Half that rate, for latency.
        half = rate / 2
        paced_count = max(1000, int(half * 5))
        paced = publish(servers.mqtt_port, events, records, paced_count, rate=half)
        paced_got = scores.wait(list(paced))
        paced_latencies = [scores.arrived[i] - paced[i] for i in paced if i in scores.arrived] or [float("nan")]
        scores.close()
        return {
            "records": records,
            "lost": records - got,
            "published_per_s": records / published_in,
            "lost_at_half_rate": paced_count - paced_got,
            "records_per_s": rate,
            "full_speed_p50_ms": percentile(latencies, 0.5) * 1000,
            "full_speed_p99_ms": percentile(latencies, 0.99) * 1000,
            "half_rate": half,
            "half_rate_p50_ms": percentile(paced_latencies, 0.5) * 1000,
            "half_rate_p99_ms": percentile(paced_latencies, 0.99) * 1000,
        }
    finally:
        process.terminate()
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sluice", required=True)
    parser.add_argument("--tansu", required=True)
    parser.add_argument("--udf-dir", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--out", default=None)
    parser.add_argument("--only", choices=["bridge", "scale", "shadow"], default=None, help="run one part")
    args = parser.parse_args()
    events = [line.split(",", 1)[1] for line in open(args.data).read().splitlines() if line.strip()]
    workdir = tempfile.mkdtemp(prefix="sluice-bench-")
    servers = Servers(args.tansu, workdir)
    try:

        def sluice(out_topic, ready, udf_dir=None, shadow_line="", tag="sluice"):
            pipeline = os.path.join(workdir, f"detect-{tag}.toml")
            with open(pipeline, "w") as f:
                f.write(
                    f"""
[sources.sensors]
type = "mqtt"
broker.url = "mqtt://127.0.0.1:{servers.mqtt_port}"
topics = ["{TOPIC}"]

[transforms.score]
type = "udf"
inputs = ["sensors"]
module = "anomaly"
{shadow_line}

[sinks.scores]
type = "kafka"
inputs = ["score"]
brokers = "{servers.brokers}"
topic = "{out_topic}"
encoding = {{ codec = "delimited", fields = ["eventid", "anomaly_val"] }}
"""
                )
            state = os.path.join(workdir, f"state-{tag}")
            return subprocess.Popen(
                [args.sluice, "run", pipeline, "--udf-dir", udf_dir or args.udf_dir, "--state-dir", state, "--ready-file", ready],
                stdout=subprocess.DEVNULL,
                stderr=open(os.path.join(workdir, f"{tag}.log"), "w"),
                # The registry's lines say when a shadow started and ended.
                env={**os.environ, "SLUICE_LOG": "warn,sluice::udf_registry=info"},
            )

        def python(out_topic, ready):
            bridge = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bridge.py")
            return subprocess.Popen(
                [sys.executable, bridge, str(servers.mqtt_port), TOPIC, servers.brokers, out_topic, args.model, ready],
                stdout=subprocess.DEVNULL,
                stderr=open(os.path.join(workdir, "bridge.log"), "w"),
            )

        results = {}
        if args.only == "shadow":
            import shadow

            results["shadow"] = shadow.measure(args, sluice, measure, servers, events, workdir)
            servers.stop()
            shadow.report(results["shadow"], args.records)
            if args.out:
                os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
                with open(args.out, "w") as f:
                    json.dump(results, f, indent=2)
            return
        if args.only not in ("scale",):
            for name, start in [("python", python), ("sluice", sluice)]:
                results[name] = measure(name, start, servers, events, args.records, workdir)
                print(f"{name}: {json.dumps(results[name])}", flush=True)
        if args.only != "bridge":
            import scale

            results["scale"] = scale.measure(args, events, workdir, free_port, wait_for_port)
    finally:
        servers.stop()
    if "scale" in results:
        scale.report(results["scale"])
    if args.only == "scale":
        if args.out:
            with open(args.out, "w") as f:
                json.dump(results, f, indent=2)
        return
    ratio = results["sluice"]["records_per_s"] / results["python"]["records_per_s"]
    print()
    print(f"MQTT (Mosquitto defaults, QoS 1) -> ECG anomaly score -> Kafka (tansu), {args.records} records, one machine")
    print("| system | records/s | lost | published/s | p50 / p99 at full speed | p50 / p99 at half rate (lost) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name in ["python", "sluice"]:
        r = results[name]
        print(
            f"| {name} | {r['records_per_s']:.0f} | {r['lost']} | {r['published_per_s']:.0f} | {r['full_speed_p50_ms']:.0f} / {r['full_speed_p99_ms']:.0f} ms "
            f"| {r['half_rate_p50_ms']:.1f} / {r['half_rate_p99_ms']:.1f} ms at {r['half_rate']:.0f} rec/s ({r['lost_at_half_rate']}) |"
        )
    print(f"\nSluice / Python bridge: {ratio:.2f}x records/s")
    if args.out:
        results["ratio"] = ratio
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
