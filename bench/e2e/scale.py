"""The scale-out part of the end-to-end benchmark (run.py calls it): Kafka -> ECG anomaly UDF ->
a sink that discards, so the UDF is the cost. Two comparisons, each measured in the same run:

- `workers = 1` against `workers = 2` on the `udf` transform, in one process;
- one `ecg-detect`-like process against two in the same consumer group (scores to Kafka).

The Kafka broker is librdkafka's mock cluster (`sluice-mock-kafka`, real sockets): tansu serves
fetches at about 22 000 records/s of this size here whatever the consumer, below what the UDF
does, so it would measure tansu. The input topic (64 partitions) is filled before the measurement. Each case runs as a
pipeline deployed on `sluice serve` (its own consumer group, so it reads the whole topic); the
driver polls the admin API for the sink's records_out and takes the rate between 10% and 90%
of the records (start-up and the tail left out). Cases alternate (1, 2, 1, 2...) so a drifting
machine skews both sides alike; the report gives every round and the median ratio.
"""

import json
import os
import statistics
import subprocess
import time
import urllib.request

from confluent_kafka import Producer

TOKEN = "bench-token-0123456789"
INPUT = "ecg-readings"
# The mock cluster keeps the last 5 MB of each partition (librdkafka's rdkafka_mock.c): spread
# over 64 partitions, 100 000 readings (2.3 KB each) stay well under it.
PARTITIONS = 64


class Serve:
    """A `sluice serve` on a free port."""

    def __init__(self, sluice, udf_dir, workdir, name, free_port, wait_for_port):
        self.port = free_port()
        state = os.path.join(workdir, f"serve-{name}")
        env = dict(os.environ, SLUICE_ADMIN_TOKEN=TOKEN, SLUICE_LOG="warn")
        self.process = subprocess.Popen(
            [sluice, "serve", "--listen", f"127.0.0.1:{self.port}", "--state-dir", state, "--udf-dir", udf_dir,
             "--host-id", name],
            stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(workdir, f"serve-{name}.log"), "w"),
            env=env,
        )
        wait_for_port(self.port)

    def call(self, method, path, body=None):
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=body.encode() if body is not None else None,
            method=method,
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/toml"},
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read() or b"null")

    def records_out(self, pipeline, component):
        status = self.call("GET", f"/pipelines/{pipeline}")
        for c in status["components"]:
            if c["name"] == component:
                return c["records_out"]
        return 0

    def owns_partitions(self, pipeline):
        """Whether this host's Kafka source owns partitions (its share of the group)."""
        status = self.call("GET", f"/pipelines/{pipeline}")
        return any(c.get("owned") for c in status["components"])

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()


def pipeline(name, brokers, workers, sink, topic=INPUT):
    return f"""
[pipeline]
name = "{name}"

[sources.readings]
type = "kafka"
brokers = "{brokers}"
topics = ["{topic}"]
group_id = "{name}"
session_timeout_ms = 6000

[transforms.score]
type = "udf"
inputs = ["readings"]
module = "anomaly"
workers = {workers}
batch_size = 64

{sink}
"""


# Scores to `sluice serve`'s stdout, which the benchmark sends to /dev/null: a sink that
# discards, at the cost of one small write each.
DISCARD = """
[sinks.out]
type = "console"
inputs = ["score"]
"""


def scores_sink(brokers, topic):
    return f"""
[sinks.out]
type = "kafka"
inputs = ["score"]
brokers = "{brokers}"
topic = "{topic}"
encoding = {{ codec = "delimited", fields = ["eventid", "anomaly_val"] }}
"""


class MockKafka:
    """`sluice-mock-kafka`: librdkafka's mock cluster in a process of its own."""

    def __init__(self, binary, topics):
        self.process = subprocess.Popen([binary] + topics, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.brokers = self.process.stdout.readline().decode().strip()
        if not self.brokers:
            raise SystemExit("sluice-mock-kafka did not start")

    def stop(self):
        self.process.stdin.close()
        self.process.wait(30)


def fill(brokers, events, records, topic=INPUT):
    producer = Producer({"bootstrap.servers": brokers, "linger.ms": 100, "batch.size": 1000000, "queue.buffering.max.messages": 200000})
    for i in range(records):
        while True:
            try:
                producer.produce(topic, f"{i},{events[i % len(events)]}".encode(), partition=i % PARTITIONS)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    producer.flush(120)


def run_case(hosts, name, toml, records, counted, fill_after=None):
    """Deploys `toml` on every host in `hosts`; returns records/s over `records` (summed over
    the hosts' `counted` component) between 10% and 90% of them. With `fill_after`, the input
    is written only once every host owns partitions (several hosts: the first to join would
    otherwise start alone, and the group's rebalance is not the steady state), and the window
    starts at 30%, after the writing."""
    for host in hosts:
        host.call("PUT", f"/pipelines/{name}", toml)
    start = 0.1
    if fill_after:
        deadline = time.time() + 120
        while not all(h.owns_partitions(name) for h in hosts):
            if time.time() > deadline:
                raise SystemExit(f"{name}: the group never gave every host partitions")
            time.sleep(0.05)
        fill_after()
        start = 0.3
    marks = {}
    deadline = time.time() + 600
    while len(marks) < 2:
        if time.time() > deadline:
            raise SystemExit(f"{name}: did not finish")
        done = sum(host.records_out(name, counted) for host in hosts)
        now = time.perf_counter()
        if done >= records * start and "a" not in marks:
            marks["a"] = (now, done)
        if done >= records * 0.9:
            marks["b"] = (now, done)
        time.sleep(0.05)
    for host in hosts:
        host.call("DELETE", f"/pipelines/{name}")
    (t0, n0), (t1, n1) = marks["a"], marks["b"]
    return (n1 - n0) / (t1 - t0)


def measure(args, events, workdir, free_port, wait_for_port, records=100000, rounds=5):
    cases = [f"detect-{n}-{r}" for n in (1, 2) for r in range(rounds)]
    topics = [f"{INPUT}:{PARTITIONS}"] + [f"in-{c}:{PARTITIONS}" for c in cases] + [f"scores-{c}" for c in cases]
    servers = MockKafka(os.path.join(os.path.dirname(args.sluice), "sluice-mock-kafka"), topics)
    try:
        return measure_on(servers, args, events, workdir, free_port, wait_for_port, records, rounds)
    finally:
        servers.stop()


def measure_on(servers, args, events, workdir, free_port, wait_for_port, records, rounds):
    fill(servers.brokers, events, records)
    hosts = [Serve(args.sluice, args.udf_dir, workdir, f"host{i}", free_port, wait_for_port) for i in (1, 2)]
    try:
        workers = {1: [], 2: []}
        processes = {1: [], 2: []}
        for r in range(rounds):
            for n in (1, 2):
                rate = run_case(hosts[:1], f"workers-{n}-{r}", pipeline(f"workers-{n}-{r}", servers.brokers, n, DISCARD),
                                records, "score")
                workers[n].append(rate)
                print(f"workers = {n}, round {r}: {rate:.0f} rec/s", flush=True)
            for n in (1, 2):
                name = f"detect-{n}-{r}"
                rate = run_case(hosts[:n], name,
                                pipeline(name, servers.brokers, 1, scores_sink(servers.brokers, f"scores-{name}"),
                                         topic=f"in-{name}"),
                                records, "out", fill_after=lambda: fill(servers.brokers, events, records, f"in-{name}"))
                processes[n].append(rate)
                print(f"{n} detect process(es), round {r}: {rate:.0f} rec/s", flush=True)
    finally:
        for host in hosts:
            host.stop()
    ratio = lambda side: statistics.median(b / a for a, b in zip(side[1], side[2]))
    return {
        "records": records,
        "workers_1": workers[1],
        "workers_2": workers[2],
        "workers_ratio": ratio(workers),
        "processes_1": processes[1],
        "processes_2": processes[2],
        "processes_ratio": ratio(processes),
    }


def report(result):
    print()
    print(f"Kafka (librdkafka mock cluster, {PARTITIONS} partitions) -> ECG anomaly UDF, {result['records']} records, rounds alternating, one machine")
    print("| case | records/s per round | median ratio |")
    print("| --- | --- | ---: |")
    fmt = lambda rates: ", ".join(f"{r:.0f}" for r in rates)
    print(f"| `workers = 1` (one process, sink discards) | {fmt(result['workers_1'])} | |")
    print(f"| `workers = 2` | {fmt(result['workers_2'])} | {result['workers_ratio']:.2f}x |")
    print(f"| one detect process (scores to Kafka) | {fmt(result['processes_1'])} | |")
    print(f"| two detect processes, one group | {fmt(result['processes_2'])} | {result['processes_ratio']:.2f}x |")
