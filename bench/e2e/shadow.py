"""The shadow part of the end-to-end benchmark (`cargo xtask bench e2e --only shadow`): the same
`sluice run` pipeline (MQTT -> ECG score -> Kafka) three times in one run, on the same servers:
no shadow (the baseline), an identical shadow (the scorer with a custom section appended: same
code, another version), and a slow shadow (the pure-Python scorer, about 300 records/s, dropped
once it is 10 000 records behind). Reported: live records/s and p99 latency as ratios to the
baseline, and whether the slow shadow was dropped.
"""

import hashlib
import os
import shutil


def _custom_section(wasm):
    name = b"sluice-shadow-bench"
    body = bytes([len(name)]) + name + b"same code, another version"
    return wasm + b"\x00" + bytes([len(body)]) + body


def measure(args, sluice, measure_one, servers, events, workdir):
    anomaly = open(os.path.join(args.udf_dir, "anomaly.wasm"), "rb").read()
    variants = [("none", None, None), ("identical", "anomaly-rebuilt", _custom_section(anomaly))]
    python = os.path.join(args.udf_dir, "anomaly-py.wasm")
    if os.path.exists(python):
        variants.append(("slow", "anomaly-py", open(python, "rb").read()))
    else:
        print(f"no {python} (built by `cargo xtask test`): the slow shadow is left out", flush=True)
    results = {}
    for tag, name, wasm in variants:
        udf_dir = os.path.join(workdir, f"udfs-{tag}")
        os.makedirs(udf_dir, exist_ok=True)
        shutil.copy(os.path.join(args.udf_dir, "anomaly.wasm"), os.path.join(udf_dir, "anomaly.wasm"))
        line = ""
        if wasm is not None:
            with open(os.path.join(udf_dir, f"{name}.wasm"), "wb") as f:
                f.write(wasm)
            line = f'shadow = "{name}@{hashlib.sha256(wasm).hexdigest()[:8]}"'

        def start(out_topic, ready, udf_dir=udf_dir, line=line, tag=tag):
            return sluice(out_topic, ready, udf_dir=udf_dir, shadow_line=line, tag=f"shadow-{tag}")

        result = measure_one(f"shadow-{tag}", start, servers, events, args.records, workdir)
        log = open(os.path.join(workdir, f"shadow-{tag}.log")).read()
        result["shadow_started"] = "shadow started" in log
        result["shadow_dropped"] = "fell behind the live version" in log
        results[tag] = result
        print(f"shadow {tag}: {result}", flush=True)
    return results


def report(results, records):
    base = results["none"]
    print()
    print(f"Live throughput with a shadow: MQTT (Mosquitto defaults, QoS 1) -> ECG score -> Kafka (tansu), {records} records, one run")
    print("| shadow | records/s | ratio to none | p99 at full speed | p99 at half rate | lost | shadow started / dropped |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for tag, r in results.items():
        print(
            f"| {tag} | {r['records_per_s']:.0f} | {r['records_per_s'] / base['records_per_s']:.2f} | "
            f"{r['full_speed_p99_ms']:.0f} ms | {r['half_rate_p99_ms']:.1f} ms | {r['lost']} | {'yes' if r['shadow_started'] else 'no'} / {'yes' if r['shadow_dropped'] else 'no'} |"
        )
