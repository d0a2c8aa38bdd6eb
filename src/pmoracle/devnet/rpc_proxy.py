"""A JSON-RPC proxy in front of anvil that fails on demand (errors, hangs, a lagging head): a test tool."""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any


class RpcFaultProxy:
    """A 127.0.0.1 JSON-RPC proxy in front of anvil that can fail on demand (a test tool).

    Modes: ``ok`` forwards; ``error`` answers every request with JSON-RPC error -32603; ``hang`` holds each request
    ``hang_seconds`` and closes without an answer; ``lag`` serves a head ``lag`` blocks behind (eth_blockNumber and
    eth_getBlockByNumber("latest")) and forwards the rest.
    """

    def __init__(self, upstream: str, *, lag: int = 8, hang_seconds: float = 3.0) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.upstream = upstream
        self.mode = "ok"
        self.lag = lag
        self.hang_seconds = hang_seconds
        self.requests: Counter[str] = Counter()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                answer = proxy.handle(body)
                if answer is None:
                    self.close_connection = True
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _forward(self, payload: Any) -> Any:
        import urllib.request

        request = urllib.request.Request(self.upstream, data=json.dumps(payload).encode(),
                                         headers={"Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def handle(self, body: bytes) -> bytes | None:
        """Return the answer to one HTTP request body in the current mode (None: no answer)."""

        mode = self.mode
        self.requests[mode] += 1
        payload = json.loads(body)
        if mode == "hang":
            time.sleep(self.hang_seconds)
            return None
        if mode == "error" and isinstance(payload, dict):
            error = {"code": -32603, "message": "injected internal error"}
            return json.dumps({"jsonrpc": "2.0", "id": payload.get("id"), "error": error}).encode()
        if mode == "lag" and isinstance(payload, dict):
            method, params = payload.get("method"), payload.get("params") or []
            if method == "eth_blockNumber":
                real = int(self._forward(payload)["result"], 16)
                return json.dumps({"jsonrpc": "2.0", "id": payload.get("id"),
                                   "result": hex(max(0, real - self.lag))}).encode()  # fmt: skip
            if method == "eth_getBlockByNumber" and params and params[0] == "latest":
                real = int(self._forward({"jsonrpc": "2.0", "id": 0, "method": "eth_blockNumber"})["result"], 16)
                payload = {**payload, "params": [hex(max(0, real - self.lag)), *params[1:]]}
        return json.dumps(self._forward(payload)).encode()

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()
