#!/usr/bin/env python3
"""Opens N keep-alive TLS connections to HOST:PORT, makes one GET / on each (HTTP/1.1 or
HTTP/2 by ALPN), checks for a 200, then keeps them all open and idle until its standard input
closes or a line arrives on it. Prints "ready N" once every connection has had its response,
so that a caller can measure the server while the connections sit idle.

    python3 benches/idle_conns.py h1|h2 N HOST PORT

Used by benches/connmem.sh. Only the standard library: the HTTP/2 side is the minimum a
server needs (preface, SETTINGS and its ACK, one HEADERS frame with static-table HPACK).
"""
import socket
import ssl
import struct
import sys

ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE


def read_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed by the server")
        buf += chunk
    return buf


def h1(s, host):
    s.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: connmem\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the response head")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    if b" 200 " not in lines[0] + b" ":
        raise RuntimeError(f"status line {lines[0]!r}")
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length is None:
        raise RuntimeError("response without Content-Length")
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed in the body")
        body += chunk


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def h2(s, host):
    auth = host.encode()
    # :method GET, :scheme https, :path / from the static table; :authority as a literal
    # without indexing, name from the static table (index 1).
    block = b"\x82\x87\x84" + b"\x01" + bytes([len(auth)]) + auth
    s.sendall(
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        + frame(4, 0, 0)  # SETTINGS, empty
        + frame(1, 0x4 | 0x1, 1, block)  # HEADERS, END_HEADERS | END_STREAM
    )
    status_seen = False
    while True:
        head = read_exact(s, 9)
        length = int.from_bytes(head[:3], "big")
        kind, flags = head[3], head[4]
        stream = struct.unpack(">I", head[5:9])[0] & 0x7FFFFFFF
        payload = read_exact(s, length)
        if kind == 4 and not flags & 0x1:  # SETTINGS: acknowledge
            s.sendall(frame(4, 0x1, 0))
        elif kind == 6 and not flags & 0x1:  # PING: answer
            s.sendall(frame(6, 0x1, 0, payload))
        elif kind == 7:
            raise RuntimeError("GOAWAY")
        elif kind == 3 and stream == 1:
            raise RuntimeError("RST_STREAM")
        elif kind == 1 and stream == 1:
            # :status 200 is static index 8, encoded 0x88 when the server indexes it.
            status_seen = status_seen or payload[:1] == b"\x88" or b"200" in payload
            if not status_seen:
                raise RuntimeError(f"response headers without 200: {payload!r}")
            if flags & 0x1:
                return
        elif kind == 0 and stream == 1 and flags & 0x1:
            if not status_seen:
                raise RuntimeError("data before headers")
            return


def main():
    mode, n, host, port = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    ctx.set_alpn_protocols(["h2"] if mode == "h2" else ["http/1.1"])
    conns = []
    for _ in range(n):
        raw = socket.create_connection((host, port), timeout=10)
        s = ctx.wrap_socket(raw, server_hostname="localhost")
        want = "h2" if mode == "h2" else "http/1.1"
        got = s.selected_alpn_protocol()
        if got != want and not (mode == "h1" and got is None):
            raise RuntimeError(f"ALPN {got!r}, wanted {want}")
        (h2 if mode == "h2" else h1)(s, "localhost")
        conns.append(s)
    print(f"ready {len(conns)}", flush=True)
    sys.stdin.readline()
    for s in conns:
        s.close()


if __name__ == "__main__":
    main()
