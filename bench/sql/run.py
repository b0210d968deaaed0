"""SQL against TOML: drains N ECG records from a pre-filled Kafka topic (tansu) through
`bench/sql/detect.toml` (ecg-detect.toml without Elasticsearch) and through the demo's three
statements (as pipelines/ecg-anomaly.sql, topic names made unique per run), alternating, and
reports records/s from `sluice run` start to the N-th score on Kafka, and the ratio.

    target/tools/bench-venv/bin/python3 bench/sql/run.py [N] [ROUNDS]

Needs `cargo xtask build`, tansu and the bench venv (`cargo xtask test`, `cargo xtask bench e2e`
install them)."""
import os, subprocess, sys, tempfile, time, uuid
from confluent_kafka import Producer, Consumer

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
WORK = tempfile.mkdtemp(prefix="sluice-sql-bench-")
N = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 3
port = 39092
tansu = subprocess.Popen([f"{ROOT}/target/tools/bin/tansu", "broker", "--storage-engine", "memory://tansu/",
    "--listener-url", f"tcp://127.0.0.1:{port}", "--advertised-listener-url", f"tcp://127.0.0.1:{port}"],
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
time.sleep(2)
brokers = f"127.0.0.1:{port}"
def topic(name):
    subprocess.run([f"{ROOT}/target/tools/bin/tansu", "topic", "create", name, "--partitions", "1", "--broker", f"tcp://{brokers}"], check=True, stdout=subprocess.DEVNULL)
lines = open(f"{ROOT}/tests/data/ecg_discord_test.msgs").read().splitlines()
topic("electric-temperature")
p = Producer({"bootstrap.servers": brokers, "linger.ms": 20})
for i in range(N):
    ev = lines[i % len(lines)]
    _, readings = ev.split(",", 1)
    p.produce("electric-temperature", f"{i},{readings}".encode())
    if i % 1000 == 0:
        p.poll(0)
p.flush()
results = {"toml": [], "sql": []}
for r in range(ROUNDS):
    for kind in ["toml", "sql"]:
        tag = uuid.uuid4().hex[:8].upper()
        if kind == "toml":
            out = f"OUT-{tag}"
            topic(out); topic(out + "-alerts"); topic("dead") if r == 0 else None
            env = dict(os.environ, KAFKA_BROKERS=brokers, GROUP=f"g-{tag}", OUT=out)
            files = [os.path.join(ROOT, "bench/sql/detect.toml")]
        else:
            out = f"SCORES_{tag}"
            sql = os.path.join(WORK, f"s{tag}.sql")
            open(sql, "w").write(f"-- sluice: name = s{tag}\n-- sluice: dead_letter_topic = dead\n"
                "CREATE STREAM TEMPERATURE_ANOMALY (eventid integer, sensorinput varchar) WITH (kafka_topic='electric-temperature', value_format='DELIMITED');\n"
                f"CREATE STREAM {out} AS SELECT EVENTID, CAST (ANOMALY(SENSORINPUT) AS DOUBLE) AS ANOMALY_VAL FROM TEMPERATURE_ANOMALY;\n"
                f"CREATE STREAM {out}_ALERTS AS SELECT EVENTID, ANOMALY_VAL FROM {out} WHERE ANOMALY_VAL > 1.5;\n")
            topic(out); topic(out + "_ALERTS")
            env = dict(os.environ, KAFKA_BROKERS=brokers)
            files = [sql]
        c = Consumer({"bootstrap.servers": brokers, "group.id": f"r-{tag}", "auto.offset.reset": "earliest"})
        c.subscribe([out])
        start = time.time()
        proc = subprocess.Popen([f"{ROOT}/target/release/sluice", "run", *files, "--udf-dir", f"{ROOT}/target/udfs",
            "--state-dir", os.path.join(WORK, f"state-{tag}")], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seen = 0
        while seen < N:
            m = c.poll(1.0)
            if m is not None and not m.error():
                seen += 1
            if time.time() - start > 300:
                break
        elapsed = time.time() - start
        proc.terminate(); proc.wait()
        c.close()
        results[kind].append(N / elapsed)
        print(kind, round(N / elapsed), "records/s (start to last output)", flush=True)
tansu.kill()
t = sorted(results["toml"]); s = sorted(results["sql"])
print("median toml", round(t[len(t)//2]), "sql", round(s[len(s)//2]), "ratio sql/toml", round(s[len(s)//2] / t[len(t)//2], 2))
