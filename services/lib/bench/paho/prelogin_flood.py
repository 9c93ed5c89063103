#!/usr/bin/env python3
"""Login latency while others misbehave before their CONNECT.

    prelogin_flood.py --port 1883 --ws-port 8083 [--half-open 1000] [--logins 200]

Opens `--half-open` TCP sockets that never send a CONNECT, and one WebSocket
connection that sends empty and ping frames before CONNECT as fast as it can,
then times `--logins` sequential fresh logins (TCP connect → CONNACK) as
`--user`/`--password`. Prints JSON: p50/p99 of the login time in ms, how many
logins failed, how many of the half-open sockets the broker closed. Plain
sockets only (no MQTT library), standard library only.
"""
import argparse, json, os, socket, struct, threading, time


def connect_packet(client_id, user, password):
    def s(b):
        return struct.pack("!H", len(b)) + b
    body = s(b"MQTT") + bytes([4, 0xC2]) + struct.pack("!H", 30)
    body += s(client_id.encode()) + s(user.encode()) + s(password.encode())
    return bytes([0x10, len(body)]) + body


def ws_flood(host, port, stop, counter):
    while not stop.is_set():
        try:
            s = socket.create_connection((host, port), timeout=5)
            s.sendall(b"GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                      b"Sec-WebSocket-Protocol: mqtt\r\n\r\n")
            s.recv(1024)
            empty = bytes([0x82, 0x80, 1, 2, 3, 4]) + bytes([0x89, 0x80, 1, 2, 3, 4])
            burst = empty * 512
            while not stop.is_set():
                s.sendall(burst)
                counter[0] += 1024
        except OSError:
            counter[1] += 1  # the broker cut this connection off; start another
        time.sleep(0.001)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--ws-port", type=int, default=8083)
    p.add_argument("--user", default="local")
    p.add_argument("--password", default="local")
    p.add_argument("--half-open", type=int, default=1000)
    p.add_argument("--logins", type=int, default=200)
    a = p.parse_args()
    half = []
    for _ in range(a.half_open):
        try:
            half.append(socket.create_connection((a.host, a.port), timeout=5))
        except OSError:
            pass
    stop, counter = threading.Event(), [0, 0]
    t = threading.Thread(target=ws_flood, args=(a.host, a.ws_port, stop, counter), daemon=True)
    t.start()
    time.sleep(0.5)
    times, failed = [], 0
    for i in range(a.logins):
        t0 = time.perf_counter()
        try:
            s = socket.create_connection((a.host, a.port), timeout=5)
            s.settimeout(5)
            s.sendall(connect_packet(f"flood-probe-{os.getpid()}-{i}", a.user, a.password))
            ack = s.recv(4)
            if ack[:2] != b"\x20\x02" or ack[3] != 0:
                failed += 1
            else:
                times.append((time.perf_counter() - t0) * 1e3)
            s.close()
        except OSError:
            failed += 1
    stop.set()
    closed = 0
    for s in half:
        s.setblocking(False)
        try:
            closed += s.recv(1) == b""
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
    times.sort()
    q = lambda f: times[min(len(times) - 1, int(len(times) * f))] if times else None
    print(json.dumps({"login_p50_ms": q(0.5), "login_p99_ms": q(0.99), "failed": failed,
                      "half_open": len(half), "half_open_closed_by_broker": closed,
                      "ws_flood_frames_sent": counter[0], "ws_flood_cut_off": counter[1]}))


if __name__ == "__main__":
    main()
