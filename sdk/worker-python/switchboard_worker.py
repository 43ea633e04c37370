"""Switchboard worker helper for Python (standard library only).

Implements the worker side of the Switchboard worker gateway protocol: one
JSON object per line on stdin (requests) and stdout (replies).

    from switchboard_worker import Worker

    def add(input, ctx):
        return input["a"] + input["b"]

    Worker(tasks={"app.tasks.add": add},
           events={"app.events.notify": lambda payload, ctx: None}).run()

Handlers get ``(input, ctx)``; ``ctx.context`` holds method, path, query,
headers (and user/client for hub rpc), ``ctx.cancelled`` is a
``threading.Event`` set when Switchboard cancels the request (timeout).
Handlers run in a thread pool (``concurrency`` threads, default 8); an
``async def`` handler is run with ``asyncio.run`` in its thread. Raising an
exception replies ``{"ok": false, "error": {"message": str(exc), "code":
exc.code or "EXECUTION_ERROR"}}``; raise ``WorkerError(message, code)`` to
choose the code.

stdout belongs to the protocol: ``print`` output is redirected to stderr
(which Switchboard logs with the worker pid).
"""

import asyncio
import inspect
import json
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

__all__ = ["Worker", "WorkerError", "Context"]


class WorkerError(Exception):
    """A handler error with a code sent to the client (HTTP 500)."""

    def __init__(self, message, code="EXECUTION_ERROR"):
        super().__init__(message)
        self.code = code


class Context:
    """Per-request data passed to handlers."""

    __slots__ = ("id", "context", "cancelled")

    def __init__(self, id, context):
        self.id = id
        self.context = context or {}
        self.cancelled = threading.Event()


class Worker:
    def __init__(self, tasks=None, events=None, concurrency=8, announce=True,
                 stdin=None, stdout=None):
        self.tasks = dict(tasks or {})
        self.events = dict(events or {})
        self.concurrency = max(1, int(concurrency))
        self.announce = announce
        self._in = stdin or sys.stdin.buffer
        self._out = stdout or sys.stdout.buffer
        if stdout is None:
            sys.stdout = sys.stderr  # print() must not corrupt the protocol
        self._wlock = threading.Lock()
        self._running = {}
        self._rlock = threading.Lock()

    def _send(self, obj):
        try:
            line = json.dumps(obj, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            line = json.dumps({"id": obj.get("id", 0), "ok": False, "error": {
                "message": "result is not JSON-serialisable: %s" % exc, "code": "EXECUTION_ERROR"}})
        data = (line + "\n").encode("utf-8")
        with self._wlock:
            self._out.write(data)
            self._out.flush()

    def _execute(self, msg, handler, ctx):
        is_task = msg.get("type") == "task"
        try:
            arg = msg.get("input") if is_task else msg.get("payload")
            result = handler(arg, ctx)
            if inspect.iscoroutine(result):
                result = asyncio.run(result)
            if ctx.cancelled.is_set():
                return
            if is_task and result is not None:
                self._send({"id": msg["id"], "ok": True, "result": result})
            else:
                self._send({"id": msg["id"], "ok": True})
        except Exception as exc:  # noqa: BLE001 - every handler error is reported
            if not ctx.cancelled.is_set():
                code = getattr(exc, "code", None)
                if not isinstance(code, str) or not code:
                    code = "EXECUTION_ERROR"
                self._send({"id": msg["id"], "ok": False,
                            "error": {"message": str(exc) or type(exc).__name__, "code": code}})
        finally:
            with self._rlock:
                self._running.pop(msg["id"], None)

    def run(self):
        """Serve requests until stdin closes or a shutdown message arrives,
        then wait for running handlers and return."""
        if self.announce:
            self._send({"type": "ready", "tasks": list(self.tasks), "events": list(self.events)})
        shutdown_id = None
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            for raw in self._in:
                raw = raw.strip()
                if not raw:
                    continue
                try:
                    msg = json.loads(raw)
                    if not isinstance(msg, dict):
                        raise ValueError("not an object")
                except ValueError:
                    self._send({"id": 0, "ok": False, "error": {"message": "invalid JSON line", "code": "INVALID_REQUEST"}})
                    continue
                typ = msg.get("type")
                if typ in ("task", "event"):
                    table = self.tasks if typ == "task" else self.events
                    name = msg.get("taskId") if typ == "task" else msg.get("eventId")
                    handler = table.get(name)
                    if handler is None:
                        self._send({"id": msg.get("id", 0), "ok": False, "error": {
                            "message": "%s %r not found" % (typ, name), "code": "NOT_FOUND"}})
                        continue
                    ctx = Context(msg.get("id"), msg.get("context"))
                    with self._rlock:
                        self._running[msg.get("id")] = ctx
                    pool.submit(self._execute, msg, handler, ctx)
                elif typ == "ping":
                    self._send({"id": msg.get("id", 0), "ok": True})
                elif typ == "cancel":
                    with self._rlock:
                        ctx = self._running.get(msg.get("id"))
                    if ctx is not None:
                        ctx.cancelled.set()
                elif typ == "shutdown":
                    shutdown_id = msg.get("id", 0)
                    break
                else:
                    self._send({"id": msg.get("id", 0), "ok": False, "error": {
                        "message": "unknown message type", "code": "INVALID_REQUEST"}})
        # The executor has waited for running handlers.
        if shutdown_id is not None:
            self._send({"id": shutdown_id, "ok": True})
