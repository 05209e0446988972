#!/usr/bin/env python3
"""Minimal OTLP/HTTP trace sink and X-Ray daemon stand-in for benchmarks
(stdlib only).

Answers every POST /v1/traces and /v1/metrics with 200 and an empty protobuf
body, after reading the request body fully (metrics requests counted apart), and counts the UDP datagrams (X-Ray segment
documents) sent to the same port number. Prints the totals to stdout on
SIGTERM/SIGINT.

usage: otlp_sink.py PORT   (binds 127.0.0.1, TCP and UDP)
"""
import signal
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
stats = {"requests": 0, "bytes": 0, "metrics": 0, "other": 0, "datagrams": 0}


def count_datagrams(port):
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", port))
    while True:
        udp.recv(65536)
        with lock:
            stats["datagrams"] += 1


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like a real collector

    def do_POST(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            body = self.read_chunked()
        else:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length > 0 else b""
        path = self.path.split("?", 1)[0]
        ok = path in ("/v1/traces", "/v1/metrics")
        with lock:
            if path == "/v1/traces":
                stats["requests"] += 1
                stats["bytes"] += len(body)
            elif ok:
                stats["metrics"] += 1
            else:
                stats["other"] += 1
        self.send_response(200 if ok else 404)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def read_chunked(self):
        body = b""
        while True:
            size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # skip trailers
                return body
            body += self.rfile.read(size)
            self.rfile.readline()  # CRLF after each chunk

    def log_message(self, *args):  # silence per-request logging
        pass


def main():
    port = int(sys.argv[1])
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=count_datagrams, args=(port,), daemon=True).start()

    def stop(*_):
        # shutdown() blocks until serve_forever returns, so run it off-thread
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"otlp sink listening on http://127.0.0.1:{port}", flush=True)
    server.serve_forever()
    with lock:
        print(f"otlp sink: requests={stats['requests']} bytes={stats['bytes']} "
              f"metrics={stats['metrics']} other={stats['other']} xray_datagrams={stats['datagrams']}", flush=True)


if __name__ == "__main__":
    main()
