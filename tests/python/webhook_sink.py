"""A webhook receiver for tests: answers the first N POSTs with 500, then 200, and
appends each body it accepted (one JSON per line) to a file.

    python webhook_sink.py PORT OUT_FILE FAIL_FIRST
"""

import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

port, out, fail_first = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
seen = 0


class Sink(BaseHTTPRequestHandler):
    def do_POST(self):
        global seen
        seen += 1
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if seen <= fail_first:
            self.send_response(500)
            self.end_headers()
            return
        with open(out, "ab") as f:
            f.write(body.replace(b"\n", b" ") + b"\n")
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


HTTPServer(("127.0.0.1", port), Sink).serve_forever()
