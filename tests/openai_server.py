"""A real OpenAI-compatible chat server on loopback, serving a local HF model (test helper).

Only what the ``openai`` client's ``chat.completions.create`` needs: ``POST /v1/chat/completions``
(+ ``GET /v1/models``), with optional bearer-key checking. Requests are recorded so tests can
assert what was sent. Stdlib ``http.server`` only; binds 127.0.0.1 on a free port and stops
when the ``with`` block ends.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import torch


class OpenAICompatibleServer:
    def __init__(self, model: Any, tokenizer: Any, *, name: str = "tiny", api_key: str | None = None):
        self.model, self.tokenizer, self.name, self.api_key = model, tokenizer, name, api_key
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()  # one generate() at a time
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        assert self._httpd is not None
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    # ---------------------------------------------------------------- serving

    def chat(self, body: dict[str, Any]) -> str:
        tok, model = self.tokenizer, self.model
        messages = body["messages"]
        if getattr(tok, "chat_template", None):
            prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            ids = tok(prompt, add_special_tokens=False, return_tensors="pt")
        else:
            prompt = "\n".join(m["content"] for m in messages)
            ids = tok(prompt, return_tensors="pt")
        temperature = float(body.get("temperature", 1.0) or 0.0)
        sample = temperature > 0
        kwargs: dict[str, Any] = {"max_new_tokens": int(body.get("max_tokens") or 16), "do_sample": sample,
                                  "pad_token_id": tok.pad_token_id}
        if sample:
            kwargs.update(temperature=temperature, top_p=float(body.get("top_p", 1.0)), top_k=0)
        with self._lock, torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(int(body.get("seed") or 0))
            out = model.generate(**ids, **kwargs)
        return tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorised(self) -> bool:
                if server.api_key is None:
                    return True
                if self.headers.get("Authorization") == f"Bearer {server.api_key}":
                    return True
                self._send(401, {"error": {"message": "invalid api key", "type": "invalid_request_error",
                                           "code": "invalid_api_key"}})
                return False

            def do_GET(self) -> None:
                if not self._authorised():
                    return
                if self.path.rstrip("/") == "/v1/models":
                    self._send(200, {"object": "list", "data": [{"id": server.name, "object": "model",
                                                                 "owned_by": "test"}]})
                else:
                    self._send(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self) -> None:
                if not self._authorised():
                    return
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(404, {"error": {"message": f"no route {self.path}"}})
                    return
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                server.requests.append(body)
                if body.get("model") != server.name:
                    self._send(404, {"error": {"message": f"model {body.get('model')!r} not found",
                                               "type": "invalid_request_error"}})
                    return
                text = server.chat(body)
                self._send(200, {
                    "id": f"chatcmpl-{len(server.requests)}", "object": "chat.completion",
                    "created": int(time.time()), "model": server.name,
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": text}}],
                    "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}})

        return Handler

    # ---------------------------------------------------------------- lifecycle

    def __enter__(self) -> OpenAICompatibleServer:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._httpd is not None and self._thread is not None
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)
