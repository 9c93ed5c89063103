#!/usr/bin/env python3
"""MQTT measurements with paho-mqtt, a client the project did not write.

Used by `lambdaless bench broker` (which runs it once per broker and QoS) and
runnable by hand:

    paho_bench.py --port 1883 --user local --password local --qos 1 \
        --round-trips 500 --messages 5000

Prints one JSON object: `round_trips_ms` (each a publish → the same client's
own subscription receiving it; the next is published from that callback), `per_second` (one publisher as
fast as paho goes, one subscriber counting, first publish to last receipt),
`received` and `sent`. paho leaves Nagle's algorithm on, as most device SDKs
do: that is the point of measuring with it.
"""
import argparse
import json
import sys
import threading
import time
import uuid

import paho.mqtt.client as mqtt


def client(args, name):
    c = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"paho-{name}-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv311,
        transport=args.transport,
    )
    if args.transport == "websockets":
        c.ws_set_options(path="/mqtt")
    c.username_pw_set(args.user, args.password)
    c.max_inflight_messages_set(args.inflight)
    connected = threading.Event()
    c.on_connect = lambda cl, ud, flags, rc, props: connected.set() if rc == 0 else None
    c.connect(args.host, args.port, keepalive=30)
    c.loop_start()
    if not connected.wait(10):
        sys.exit(f"{name}: no CONNACK from {args.host}:{args.port} within 10 s")
    return c


def subscribe(c, topic, qos):
    done = threading.Event()
    c.on_subscribe = lambda cl, ud, mid, codes, props: done.set()
    c.subscribe(topic, qos)
    if not done.wait(10):
        sys.exit(f"no SUBACK for {topic} within 10 s")


def round_trips(args, run):
    """Each message is published from the callback that received the previous
    one (paho's network thread, the usual way to answer in paho), so a round
    trip is publish → the broker → the same client's own subscription."""
    topic = f"bench/paho/{run}/rt"
    c = client(args, "rt")
    warm_up = 20
    total = args.round_trips + warm_up
    state = {"seq": 0, "t": 0.0, "out": []}
    done = threading.Event()

    def send(cl):
        state["t"] = time.perf_counter()
        cl.publish(topic, json.dumps({"seq": state["seq"]}), qos=args.qos)

    def on_message(cl, ud, msg):
        if json.loads(msg.payload)["seq"] != state["seq"]:
            return
        if state["seq"] >= warm_up:
            state["out"].append((time.perf_counter() - state["t"]) * 1e3)
        state["seq"] += 1
        if state["seq"] >= total:
            done.set()
        else:
            send(cl)

    c.on_message = on_message
    subscribe(c, topic, args.qos)
    send(c)
    while not done.wait(10):
        if state["seq"] < total:
            n = state["seq"]
            if done.wait(10) or state["seq"] != n:
                continue
            sys.exit(f"round trip {n}: no message within 20 s")
    c.loop_stop()
    c.disconnect()
    return state["out"]


def rate(args, run):
    topic = f"bench/paho/{run}/flood"
    sub = client(args, "sub")
    count = {"n": 0}
    all_in = threading.Event()

    def on_message(cl, ud, msg):
        count["n"] += 1
        if count["n"] >= args.messages:
            all_in.set()

    sub.on_message = on_message
    subscribe(sub, topic, args.qos)
    pub = client(args, "pub")
    payload = json.dumps({"seq": 0, "pad": "0123456789abcdef0123456789abcdef"})
    started = time.perf_counter()
    for _ in range(args.messages):
        pub.publish(topic, payload, qos=args.qos)
    # QoS 0 may lose messages under load: stop 5 s after the last one arrived.
    last = -1
    while not all_in.wait(5):
        if count["n"] == last:
            break
        last = count["n"]
    elapsed = time.perf_counter() - started
    if not all_in.is_set():
        elapsed -= 5
    for c in (pub, sub):
        c.loop_stop()
        c.disconnect()
    return count["n"], count["n"] / elapsed


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--user", default="local")
    p.add_argument("--password", default="local")
    p.add_argument("--qos", type=int, choices=(0, 1), default=1)
    p.add_argument("--round-trips", type=int, default=500)
    p.add_argument("--messages", type=int, default=5000)
    p.add_argument("--inflight", type=int, default=100)
    p.add_argument("--transport", choices=("tcp", "websockets"), default="tcp")
    args = p.parse_args()
    run = uuid.uuid4().hex[:8]
    rt = round_trips(args, run)
    received, per_second = rate(args, run)
    print(json.dumps({
        "round_trips_ms": rt,
        "per_second": per_second,
        "received": received,
        "sent": args.messages,
    }))


if __name__ == "__main__":
    main()
