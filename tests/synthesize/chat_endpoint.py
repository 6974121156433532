"""A chat-completions server on the loopback interface for the openai generator's tests: it speaks
POST /v1/chat/completions, answers with a function of the request, and fails on purpose when told."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# How long a "timeout" answer makes the client wait (its timeout in the tests is shorter).
SLOW_S = 1.5


def fixed_answer(request: dict) -> tuple[str, str]:
    """An answer that depends on the prompt and sample, like a model's: (content, finish_reason)."""
    passage = request["messages"][-1]["content"].split("\n\n")[0].removeprefix("Article: ")
    words = passage.split()
    return f"{' '.join(words[1:4])} news {request['seed']}", "stop"


class FakeEndpoint:
    """A chat-completions server in a thread. ``script`` is the list of faults the next requests
    get ('429', '500', '400', '401', 'timeout'), one per request, before requests are answered by
    ``answer``. Every request's body and Authorization header are recorded."""

    def __init__(self, answer: Callable[[dict], tuple[str, str]] = fixed_answer) -> None:
        self.answer = answer
        self.script: list[str] = []
        self.requests: list[dict] = []
        self.auth: list[str | None] = []
        self.lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with endpoint.lock:
                    endpoint.requests.append(body)
                    endpoint.auth.append(self.headers.get("Authorization"))
                    fault = endpoint.script.pop(0) if endpoint.script else None
                if self.path != "/v1/chat/completions":
                    return self._send(404, {"error": {"message": "not found"}})
                if fault == "timeout":
                    time.sleep(SLOW_S)
                    fault = None
                if fault == "429":
                    return self._send(429, {"error": {"message": "slow down", "type": "rate_limit"}},
                                      {"Retry-After": "0"})
                if fault in ("500", "400"):
                    return self._send(int(fault), {"error": {"message": f"fault {fault}"}})
                if fault == "401":  # a careless server that echoes the key it was given
                    return self._send(401, {"error": {"message": f"bad key {self.headers.get('Authorization')}"}})
                content, finish = endpoint.answer(body)
                self._send(200, {"id": "cmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
                                 "choices": [{"index": 0, "finish_reason": finish,
                                              "message": {"role": "assistant", "content": content}}],
                                 "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

            def _send(self, status, payload, headers=None):
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeEndpoint:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
