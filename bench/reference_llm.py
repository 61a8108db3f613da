"""A reference "model" for the reply harness: an OpenAI-compatible chat endpoint on loopback that answers the
harness's questions with the replies in bench/eval_reference.yaml.

It proves the production wiring end to end without a cloud key: the server's openai-compatible engine posts
to POST /v1/chat/completions (stream=true, server-sent events), and the reference answers only what that
request really carries. The persona: without a system prompt naming the avatar, it says "Hello." Memory: a
follow-up is answered only when the request holds the earlier turns of its session, else "I don't know."
An unknown question gets "I don't know." too. So a broken prompt, memory or stream shows in the score.

    python bench/reference_llm.py [--port 8089]     # then AVATAR_LLM_ENGINE=openai-compatible ...
    python bench/eval_replies.py --reference        # starts it and a server wired to it
"""

from __future__ import annotations

import argparse
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "bench" / "eval_reference.yaml"
QUESTIONS = ROOT / "bench" / "eval_questions.yaml"
MODEL = "harness-reference"


class Reference:
    """The reply to a chat request, from the reference replies and the questions' sessions."""

    def __init__(self, persona_name: str) -> None:
        self.persona_name = persona_name
        self.replies: dict[str, str] = yaml.safe_load(REFERENCE.read_text(encoding="utf-8"))["replies"]
        self.questions: list[dict[str, Any]] = yaml.safe_load(QUESTIONS.read_text(encoding="utf-8"))["questions"]

    def answer(self, messages: list[dict[str, str]]) -> str:
        system = " ".join(m.get("content", "") for m in messages if m.get("role") == "system")
        if self.persona_name not in system:
            return "Hello."
        users = [m.get("content", "").strip() for m in messages if m.get("role") == "user"]
        if not users:
            return "I don't know."
        question = next((q for q in self.questions if q["text"].strip() == users[-1]), None)
        if question is None or question["id"] not in self.replies:
            return "I don't know."
        if question.get("session"):
            earlier = [q["text"].strip() for q in self.questions if q.get("session") == question["session"]]
            earlier = earlier[: earlier.index(question["text"].strip())]
            if any(text not in users[:-1] for text in earlier):
                return "I don't know."
        return self.replies[question["id"]]


def _sse(text: str) -> Iterator[bytes]:
    words = text.split(" ")
    for k, word in enumerate(words):
        delta = word + (" " if k < len(words) - 1 else "")
        chunk = {
            "object": "chat.completion.chunk",
            "model": MODEL,
            "choices": [{"index": 0, "delta": {"content": delta}}],
        }
        yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode()
    done = {
        "object": "chat.completion.chunk",
        "model": MODEL,
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
    }
    yield f"data: {json.dumps(done)}\n\ndata: [DONE]\n\n".encode()


def make_server(reference: Reference, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            if self.path.split("?")[0] != "/v1/chat/completions":
                self._json(404, {"error": {"message": f"no such path {self.path}"}})
                return
            try:
                request = json.loads(body)
                reply = reference.answer(request["messages"])
            except (ValueError, KeyError, TypeError) as exc:
                self._json(400, {"error": {"message": f"bad request: {exc}"}})
                return
            if not request.get("stream"):
                message = {"role": "assistant", "content": reply}
                self._json(
                    200, {"object": "chat.completion", "model": MODEL, "choices": [{"index": 0, "message": message}]}
                )
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for chunk in _sse(reply):
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")

        def _json(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload, ensure_ascii=False).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return ThreadingHTTPServer((host, port), Handler)


@contextmanager
def running(persona_name: str) -> Iterator[str]:
    """The reference endpoint on a free loopback port, for as long as the block runs: its base URL."""
    server = make_server(Reference(persona_name))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--persona", default="Grace Hopper", help="the avatar's name the system prompt must hold")
    args = parser.parse_args()
    server = make_server(Reference(args.persona), port=args.port)
    print(f"reference chat endpoint: http://127.0.0.1:{args.port}/v1 (model {MODEL})")
    server.serve_forever()


if __name__ == "__main__":
    main()
