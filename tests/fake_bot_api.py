"""A Bot API server on loopback, for driving the bot through python-telegram-bot's real HTTP
client: getMe, getUpdates (long polling), sendMessage, sendDocument (a multipart upload: the
file's name, type and bytes are recorded), editMessageText, answerCallbackQuery, getFile and
file downloads, setWebhook/deleteWebhook. Tests queue what users do; the server
records what the bot called. It runs in its own thread, so a service in another process can
use it too.
"""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import itertools
import json
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "123456:TEST-token"
BOT_ID = 123456


@dataclass
class Call:
    method: str
    params: dict[str, Any]


@dataclass
class FakeBotApi:
    updates: list[dict[str, Any]] = field(default_factory=list)
    history: dict[int, dict[str, Any]] = field(default_factory=dict)  # every update, ever
    calls: list[Call] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    confirmed_offset: int = 0  # the highest offset the bot has confirmed
    _lock: threading.Condition = field(default_factory=threading.Condition)
    _update_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1000))
    _message_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    server: ThreadingHTTPServer | None = None

    # ---- what users do ---------------------------------------------------------------------

    def _push(self, update: dict[str, Any]) -> int:
        with self._lock:
            update_id = next(self._update_ids)
            self.history[update_id] = {"update_id": update_id, **update}
            self.updates.append(self.history[update_id])
            self._lock.notify_all()
        return update_id

    def message(
        self, user: int, *, chat_type: str = "private", language: str = "zh", **content: Any
    ) -> int:
        return self._push({"message": self._message(user, chat_type, language, content)})

    def text(self, user: int, text: str, language: str = "zh") -> int:
        entities = []
        if text.startswith("/"):
            entities = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
        return self.message(user, language=language, text=text, entities=entities)

    def edit(self, user: int, text: str) -> int:
        return self._push({"edited_message": self._message(user, "private", "zh", {"text": text})})

    def tap(self, user: int, data: str, question: dict[str, Any]) -> int:
        """The user taps a button under `question` (a sendMessage call's params)."""
        return self._push(
            {
                "callback_query": {
                    "id": str(next(self._message_ids)),
                    "from": _user(user, "zh"),
                    "chat_instance": str(user),
                    "data": data,
                    "message": {
                        "message_id": question["message_id"],
                        "date": int(time.time()),
                        "chat": {"id": user, "type": "private"},
                        "text": question["text"],
                    },
                }
            }
        )

    def document(
        self, user: int, content: bytes, *, mime_type: str, name: str, size: int | None = None
    ) -> int:
        file_id = f"file-{len(self.files) + 1}"
        self.files[file_id] = content
        return self.message(
            user,
            document={
                "file_id": file_id,
                "file_unique_id": file_id,
                "file_name": name,
                "mime_type": mime_type,
                "file_size": len(content) if size is None else size,
            },
        )

    def replay(self, update_id: int) -> None:
        """Telegram sends an update again (it does, when it thinks it was not received)."""
        with self._lock:
            self.updates.append(self.history[update_id])
            self._lock.notify_all()

    def _message(
        self, user: int, chat_type: str, language: str, content: dict[str, Any]
    ) -> dict[str, Any]:
        chat_id = user if chat_type == "private" else -user
        return {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": chat_type},
            "from": _user(user, language),
            **content,
        }

    # ---- what the bot did ------------------------------------------------------------------

    def sent(self, chat_id: int) -> list[dict[str, Any]]:
        """sendMessage calls to the chat, with the message_id each was given."""
        return [
            c.params
            for c in list(self.calls)
            if c.method == "sendMessage" and str(c.params.get("chat_id")) == str(chat_id)
        ]

    def wait_sent(self, chat_id: int, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(found := self.sent(chat_id)) < count:
            if time.monotonic() > deadline:
                texts = [m["text"][:60] for m in found]
                raise AssertionError(f"chat {chat_id}: {len(found)} of {count} messages: {texts}")
            time.sleep(0.02)
        return found

    def called(self, method: str) -> list[dict[str, Any]]:
        return [c.params for c in list(self.calls) if c.method == method]

    # ---- the server ------------------------------------------------------------------------

    def answer(self, method: str, params: dict[str, Any]) -> Any:
        self.calls.append(Call(method, params))
        if method == "getMe":
            return {
                "id": BOT_ID,
                "is_bot": True,
                "first_name": "Rightsdesk",
                "username": "rightsdesk_test_bot",
            }
        if method == "getUpdates":
            return self._updates(params)
        if method in ("sendMessage", "editMessageText"):
            message_id = params.get("message_id") or next(self._message_ids)
            params["message_id"] = int(message_id)
            return {
                "message_id": int(message_id),
                "date": int(time.time()),
                "chat": {"id": int(params["chat_id"]), "type": "private"},
                "text": params.get("text", ""),
            }
        if method == "sendDocument":
            document = params.get("document") or {}
            return {
                "message_id": next(self._message_ids),
                "date": int(time.time()),
                "chat": {"id": int(params["chat_id"]), "type": "private"},
                "document": {
                    "file_id": f"sent-{len(self.calls)}",
                    "file_unique_id": f"sent-{len(self.calls)}",
                    "file_name": document.get("filename"),
                    "mime_type": document.get("content_type"),
                    "file_size": len(document.get("content", b"")),
                },
            }
        if method == "getFile":
            file_id = params["file_id"]
            return {
                "file_id": file_id,
                "file_unique_id": file_id,
                "file_size": len(self.files.get(file_id, b"")),
                "file_path": f"documents/{file_id}",
            }
        if method in ("answerCallbackQuery", "setWebhook", "deleteWebhook"):
            return True
        raise KeyError(method)

    def _updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = int(params.get("offset") or 0)
        wait = min(float(params.get("timeout") or 0), 1.0)
        deadline = time.monotonic() + wait
        with self._lock:
            self.confirmed_offset = max(self.confirmed_offset, offset)
            # Confirmed updates are gone for good, as on Telegram.
            self.updates = [u for u in self.updates if u["update_id"] >= offset]
            while not self.updates and time.monotonic() < deadline:
                self._lock.wait(deadline - time.monotonic())
            return list(self.updates)

    def start(self) -> str:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # file downloads
                prefix = f"/file/bot{TOKEN}/documents/"
                path = urllib.parse.unquote(self.path)
                if path.startswith(prefix) and path[len(prefix) :] in api.files:
                    body = api.files[path[len(prefix) :]]
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.send_response(404)
                self.end_headers()

            def do_POST(self) -> None:
                prefix = f"/bot{TOKEN}/"
                if not self.path.startswith(prefix):
                    refused = {"ok": False, "error_code": 401, "description": "Unauthorized"}
                    self._reply(401, refused)
                    return
                method = self.path[len(prefix) :]
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                params = _params(body, self.headers.get("Content-Type", ""))
                try:
                    result = api.answer(method, params)
                except KeyError:
                    self._reply(404, {"ok": False, "error_code": 404, "description": "Not Found"})
                    return
                self._reply(200, {"ok": True, "result": result})

            def _reply(self, status: int, payload: dict[str, Any]) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                # The bot may have given up on a long poll (it is stopping): nobody to answer.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def _user(user: int, language: str) -> dict[str, Any]:
    return {"id": user, "is_bot": False, "first_name": f"User{user}", "language_code": language}


def _params(body: bytes, content_type: str) -> dict[str, Any]:
    """python-telegram-bot posts JSON, a form whose structured values are JSON, or (to upload
    a file) multipart/form-data: a file part becomes {"filename", "content_type", "content"}."""
    if "json" in content_type:
        loaded: dict[str, Any] = json.loads(body or b"{}")
        return loaded
    if content_type.startswith("multipart/form-data"):
        return _multipart(body, content_type)
    params: dict[str, Any] = {}
    for key, values in urllib.parse.parse_qs(body.decode()).items():
        value: Any = values[0]
        if key in ("reply_markup", "allowed_updates", "entities"):
            value = json.loads(value)
        params[key] = value
    return params


def _multipart(body: bytes, content_type: str) -> dict[str, Any]:
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    form = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    params: dict[str, Any] = {}
    for part in form.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        content = payload if isinstance(payload, bytes) else b""
        if part.get_filename() is not None:
            params[str(name)] = {
                "filename": part.get_filename(),
                "content_type": part.get_content_type(),
                "content": content,
            }
        else:
            value: Any = content.decode()
            if name in ("reply_markup", "allowed_updates", "entities"):
                value = json.loads(value)
            params[str(name)] = value
    return params
