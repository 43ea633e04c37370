# Test worker for worker-to-server calls, recycle requests and kill on timeout.
import json, os, sys

def send(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()

waiting = {}  # call number -> request id
for line in sys.stdin:
    m = json.loads(line)
    t, i = m.get("type"), m.get("id")
    if t == "ping":
        send({"id": i, "ok": True})
    elif t == "shutdown":
        break
    elif t == "callReply":
        rid = waiting.pop(m["call"])
        if m["ok"]:
            send({"id": rid, "ok": True, "result": m["result"]})
        else:
            send({"id": rid, "ok": False, "error": m["error"]})
    elif t == "task":
        name = m["taskId"]
        if name == "test.call":
            n = len(waiting) + 1000 * i
            waiting[n] = i
            send({"type": "call", "id": i, "call": n, "method": "echo", "params": m["input"]})
        elif name == "test.recycle":
            send({"id": i, "ok": True, "result": os.getpid(), "recycle": True})
        elif name == "test.pid":
            send({"id": i, "ok": True, "result": os.getpid()})
        elif name == "test.hang":
            pass
        elif name == "test.exit":
            os._exit(m["input"]["code"])
