"""The chat example's backend: the web app (the page, centrifuge-js from node_modules, login)
and chorus's hook backend in one aiohttp process, with SQLite as the store.

    POST /login {"name": N}  picks a display name: a session row and an HttpOnly cookie
    /chorus/connect          connect hook: the user is the session named by the WebSocket
                             upgrade's Cookie header (chorus forwards it: http_headers)
    /chorus/subscribe        subscribe hook: room:<r> and typing:<r> for the rooms in ROOMS
    /chorus/publish          publish hook: validates the text, stores the message, returns
                             what everyone gets: {id, user, text, time}
    /chorus/rpc              rpc hook: `typing` publishes {user} into typing:<room> through
                             the HTTP server API; `older` returns stored messages before an id

    python chat.py [--port 8080] [--db chat.db]

Environment: CHORUS_WS (the page's WebSocket URL, default ws://127.0.0.1:8000/connection/
websocket), CHORUS_API (default http://127.0.0.1:8000/api), CHORUS_API_KEY (default: the
config's http_api.key). Prints `chat on http://127.0.0.1:PORT/` once it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import sqlite3
import time
from http.cookies import SimpleCookie
from pathlib import Path

from aiohttp import ClientSession, ClientTimeout, web

HERE = Path(__file__).resolve().parent
CONFIG = json.loads((HERE / "config.json").read_text())
ROOMS = ["general", "random", "help"]
MAX_TEXT = 500
OLDER_PAGE = 20
COOKIE = "chat_session"
NAME = re.compile(r"^[A-Za-z0-9_-]{1,20}$")

# Error codes the page sees (applications own 400–1999; the protocol owns 100–399).
E_EMPTY = (1001, "empty message")
E_TOO_LONG = (1002, f"message longer than {MAX_TEXT} characters")
E_NO_ROOM = (1003, "no such room")
E_METHOD = (1004, "unknown method")


def error(code_message) -> web.Response:
    code, message = code_message
    return web.json_response({"error": {"code": code, "message": message}})


def result(res=None) -> web.Response:
    return web.json_response({"result": res or {}})


class Store:
    """Sessions and messages in one SQLite file. Calls are short and local, so they run
    inline on the event loop."""

    def __init__(self, path: str):
        self.db = sqlite3.connect(path)
        self.db.executescript(
            """
            CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, user TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS messages (
                id INTEGER PRIMARY KEY AUTOINCREMENT, room TEXT NOT NULL,
                user TEXT NOT NULL, text TEXT NOT NULL, time INTEGER NOT NULL);
            CREATE INDEX IF NOT EXISTS messages_room_id ON messages (room, id);
            """
        )

    def login(self, user: str) -> str:
        sid = secrets.token_urlsafe(24)
        with self.db:
            self.db.execute("INSERT INTO sessions VALUES (?, ?)", (sid, user))
        return sid

    def user(self, sid: str | None) -> str | None:
        row = sid and self.db.execute("SELECT user FROM sessions WHERE id = ?", (sid,)).fetchone()
        return row[0] if row else None

    def add(self, room: str, user: str, text: str) -> dict:
        now = int(time.time() * 1000)
        with self.db:
            cur = self.db.execute(
                "INSERT INTO messages (room, user, text, time) VALUES (?, ?, ?, ?)",
                (room, user, text, now),
            )
        return {"id": cur.lastrowid, "user": user, "text": text, "time": now}

    def older(self, room: str, before: int, limit: int) -> list:
        rows = self.db.execute(
            "SELECT id, user, text, time FROM messages WHERE room = ? AND id < ?"
            " ORDER BY id DESC LIMIT ?",
            (room, before, limit),
        ).fetchall()
        return [{"id": i, "user": u, "text": t, "time": tm} for i, u, t, tm in reversed(rows)]


def room_of(channel: str) -> str | None:
    """`room:general` / `typing:general` → `general` when it is one of ROOMS."""
    room = channel.partition(":")[2]
    return room if room in ROOMS else None


def session_of(request: web.Request) -> str | None:
    cookie = SimpleCookie(request.headers.get("Cookie", ""))
    return cookie[COOKIE].value if COOKIE in cookie else None


# ---- the web app ---------------------------------------------------------------------------


async def login(request: web.Request) -> web.Response:
    try:
        name = str((await request.json()).get("name", "")).strip()
    except (ValueError, AttributeError):
        name = ""
    if not NAME.match(name):
        return web.json_response({"error": "1–20 letters, digits, - or _"}, status=400)
    resp = web.json_response({"user": name, "rooms": ROOMS})
    resp.set_cookie(COOKIE, request.app["store"].login(name), httponly=True, samesite="Lax")
    return resp


async def me(request: web.Request) -> web.Response:
    user = request.app["store"].user(session_of(request))
    if not user:
        return web.json_response({"error": "not logged in"}, status=401)
    return web.json_response({"user": user, "rooms": ROOMS})


async def page_config(request: web.Request) -> web.Response:
    return web.json_response({"ws": request.app["ws"]})


def static(name: str, ctype: str):
    path = HERE / name

    async def handler(_: web.Request) -> web.Response:
        if not path.exists():
            raise web.HTTPInternalServerError(text=f"{name} missing (run npm ci in examples/chat)")
        return web.Response(body=path.read_bytes(), content_type=ctype, charset="utf-8")

    return handler


# ---- chorus's hooks ------------------------------------------------------------------------


async def hook_connect(request: web.Request) -> web.Response:
    user = request.app["store"].user(session_of(request))
    if not user:
        # 4500–4999: the SDK does not reconnect; the page sends the visitor to the login form.
        return web.json_response({"disconnect": {"code": 4501, "reason": "not logged in"}})
    return result({"user": user, "info": {"name": user}})


async def hook_subscribe(request: web.Request) -> web.Response:
    body = await request.json()
    return result() if room_of(body["channel"]) else error(E_NO_ROOM)


async def hook_publish(request: web.Request) -> web.Response:
    body = await request.json()
    room = room_of(body["channel"])
    data = body.get("data")
    text = str(data.get("text", "") if isinstance(data, dict) else "").strip()
    if not room:
        return error(E_NO_ROOM)
    if not text:
        return error(E_EMPTY)
    if len(text) > MAX_TEXT:
        return error(E_TOO_LONG)
    # Stored before chorus publishes: SQLite is the record, chorus's history a recent window.
    return result({"data": request.app["store"].add(room, body["user"], text)})


async def hook_rpc(request: web.Request) -> web.Response:
    body = await request.json()
    data = body.get("data") if isinstance(body.get("data"), dict) else {}
    room = data.get("room") if data.get("room") in ROOMS else None
    method = body.get("method")
    if method not in ("typing", "older"):
        return error(E_METHOD)
    if not room:
        return error(E_NO_ROOM)
    if method == "typing":
        await api(request.app, "publish", {"channel": f"typing:{room}", "data": {"user": body["user"]}})
        return result()
    before = data.get("before") if isinstance(data.get("before"), int) else 2**62
    messages = request.app["store"].older(room, before, OLDER_PAGE + 1)
    more = len(messages) > OLDER_PAGE
    return result({"data": {"messages": messages[-OLDER_PAGE:], "more": more}})


async def api(app: web.Application, method: str, params: dict) -> dict:
    """One call of chorus's HTTP server API."""
    async with app["http"].post(f"{app['api']}/{method}", json=params, headers={"X-API-Key": app["api_key"]}) as r:
        reply = await r.json()
    if "error" in reply:
        raise web.HTTPBadGateway(text=f"chorus {method}: {reply['error']}")
    return reply.get("result", {})


async def on_startup(app: web.Application) -> None:
    app["http"] = ClientSession(timeout=ClientTimeout(total=2))


async def on_cleanup(app: web.Application) -> None:
    await app["http"].close()


def make_app(db: str) -> web.Application:
    app = web.Application()
    app["store"] = Store(db)
    app["ws"] = os.environ.get("CHORUS_WS", "ws://127.0.0.1:8000/connection/websocket")
    app["api"] = os.environ.get("CHORUS_API", "http://127.0.0.1:8000/api")
    app["api_key"] = os.environ.get("CHORUS_API_KEY", CONFIG["http_api"]["key"])
    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    js = "text/javascript"
    app.router.add_get("/", static("index.html", "text/html"))
    app.router.add_get("/app.js", static("app.js", js))
    app.router.add_get("/chat.css", static("chat.css", "text/css"))
    app.router.add_get("/vendor/centrifuge.js", static("node_modules/centrifuge/dist/centrifuge.js", js))
    app.router.add_get("/config.json", page_config)
    app.router.add_get("/me", me)
    app.router.add_post("/login", login)
    app.router.add_post("/chorus/connect", hook_connect)
    app.router.add_post("/chorus/subscribe", hook_subscribe)
    app.router.add_post("/chorus/publish", hook_publish)
    app.router.add_post("/chorus/rpc", hook_rpc)
    return app


async def main(port: int, db: str) -> None:
    runner = web.AppRunner(make_app(db), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    print(f"chat on http://127.0.0.1:{runner.addresses[0][1]}/", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    parser.add_argument("--db", default=os.environ.get("CHAT_DB", str(HERE / "chat.db")))
    args = parser.parse_args()
    try:
        asyncio.run(main(args.port, args.db))
    except KeyboardInterrupt:
        pass
