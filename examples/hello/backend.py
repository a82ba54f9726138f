#!/usr/bin/python3
"""A tiny HTTP backend for the hello example: answers every request with a greeting that names
the path it saw. Listens on 127.0.0.1, port 0 (any free port) unless given one, and prints the
port on stdout so the caller can find it."""
import http.server
import sys


class Hello(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = f"hello from the backend: you asked for {self.path} (x-request-id {self.headers.get('x-request-id')})\n".encode()
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        pass


port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Hello)
print(server.server_address[1], flush=True)
server.serve_forever()
