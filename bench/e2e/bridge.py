"""The baseline: MQTT -> ECG autoencoder -> Kafka, as a user would write it in Python.

paho-mqtt (QoS 1, messages acknowledged as soon as the callback returns), numpy for the
H2O autoencoder (the same weights as the anomaly UDF, float64), confluent-kafka to produce
`EVENTID,MSE`. Usage: bridge.py MQTT_PORT TOPIC KAFKA_BROKERS OUT_TOPIC MODEL_JSON READY_FILE
"""

import json
import sys

import numpy as np
import paho.mqtt.client as mqtt
from confluent_kafka import Producer

mqtt_port, topic, brokers, out_topic, model_path, ready_file = sys.argv[1:7]

model = json.load(open(model_path))
sub = np.array(model["input_sub"], dtype=np.float64)
mul = np.array(model["input_mul"], dtype=np.float64)
layers = model["layers"]
weights = [
    np.array(w, dtype=np.float64).reshape(layers[i + 1], layers[i])
    for i, w in enumerate(model["weights"])
]
biases = [np.array(b, dtype=np.float64) for b in model["biases"]]


def score(readings):
    x = (readings - sub) * mul
    for w, b in zip(weights, biases):
        x = np.tanh(w @ x + b)
    recon = x / mul + sub
    return float(np.mean((readings - recon) ** 2))


producer = Producer({"bootstrap.servers": brokers, "linger.ms": 5})


def on_message(client, userdata, message):
    text = message.payload.decode()
    event_id, _, values = text.partition(",")
    readings = np.array([float(v) for v in values.split("#")], dtype=np.float64)
    producer.produce(out_topic, f"{event_id.strip()},{score(readings)}".encode())
    producer.poll(0)


def on_connect(client, userdata, flags, reason_code, properties):
    client.subscribe(topic, qos=1)


def on_subscribe(client, userdata, mid, reason_codes, properties):
    open(ready_file, "w").close()


client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="python-bridge", clean_session=False)
client.on_message = on_message
client.on_connect = on_connect
client.on_subscribe = on_subscribe
client.connect("127.0.0.1", int(mqtt_port))
try:
    client.loop_forever()
finally:
    producer.flush(10)
