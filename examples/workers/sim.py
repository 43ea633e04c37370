#!/usr/bin/env python3
"""Seeded Monte-Carlo damage simulation: a worker for `switchboard node`.

Speaks the worker gateway's stdio protocol (one JSON object per line, see
docs/worker-gateway.md) without dependencies. Each task "chunk" gets a chunk
assignment {"id","jobId","leaseId","iterations","configHash","config",
"seedOffset",...} and returns {iterations, meanDps, stdDps, minDps, maxDps}.
The same input always gives the same output, bit for bit, and sim.mjs gives
the same output as this file (the algorithm is in README.md).

    switchboard node --server http://127.0.0.1:8000 --worker "python3 sim.py"
"""
import json
import math
import sys
import threading
import time

MASK = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15
MAX_ATTACKS = 100000
PROGRESS_EVERY = 100

DEFAULTS = {
    "duration": 60.0, "attacksPerSecond": 1.0, "baseDamage": 100.0,
    "damageSpread": 0.1, "hitChance": 0.95, "critChance": 0.2,
    "critMultiplier": 2.0, "sleepMs": 0.0, "crashAt": -1.0,
}


class SimError(Exception):
    def __init__(self, message, code="INVALID_CONFIG"):
        super().__init__(message)
        self.code = code


def mix(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


class Rng:
    """splitmix64 seeded per iteration: state = mix(base + (index+1)*GAMMA)."""

    def __init__(self, base, index):
        self.state = mix((base + (index + 1) * GAMMA) & MASK)

    def uniform(self):
        self.state = (self.state + GAMMA) & MASK
        return (mix(self.state) >> 11) / 9007199254740992.0


def settings(config):
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise SimError("config must be an object")
    s = {}
    for k, d in DEFAULTS.items():
        v = config.get(k, d)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise SimError("config.%s must be a finite number" % k)
        s[k] = float(v)
    if s["duration"] <= 0:
        raise SimError("config.duration must be positive")
    attacks = math.floor(s["duration"] * s["attacksPerSecond"])
    if attacks < 1 or attacks > MAX_ATTACKS:
        raise SimError("config.duration * config.attacksPerSecond must give 1..%d attacks" % MAX_ATTACKS)
    s["attacks"] = attacks
    return s


def seed_base(config_hash):
    if not isinstance(config_hash, str) or len(config_hash) < 16:
        raise SimError("configHash must be a hex string of at least 16 characters", "INVALID_INPUT")
    try:
        return int(config_hash[:16], 16)
    except ValueError:
        raise SimError("configHash must be hex", "INVALID_INPUT")


def iteration_dps(s, rng):
    total = 0.0
    lo = s["baseDamage"] * (1 - s["damageSpread"])
    width = s["baseDamage"] * 2 * s["damageSpread"]
    for _ in range(s["attacks"]):
        if rng.uniform() < s["hitChance"]:
            d = lo + width * rng.uniform()
            if rng.uniform() < s["critChance"]:
                d = d * s["critMultiplier"]
            total = total + d
    return total / s["duration"]


def simulate(chunk, progress=None, cancelled=None):
    if not isinstance(chunk, dict):
        raise SimError("input must be a chunk object", "INVALID_INPUT")
    n, off = chunk.get("iterations"), chunk.get("seedOffset", 0)
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise SimError("iterations must be a positive integer", "INVALID_INPUT")
    if isinstance(off, bool) or not isinstance(off, int) or off < 0:
        raise SimError("seedOffset must be a non-negative integer", "INVALID_INPUT")
    s = settings(chunk.get("config"))
    base = seed_base(chunk.get("configHash"))
    values = []
    for i in range(n):
        if cancelled is not None and cancelled.is_set():
            return None
        if s["crashAt"] >= 0 and off + i == int(s["crashAt"]):
            sys.stderr.write("sim: crashing at iteration %d as configured (crashAt)\n" % (off + i))
            sys.stderr.flush()
            import os
            os._exit(3)
        if s["sleepMs"] > 0:
            time.sleep(s["sleepMs"] / 1000.0)
        values.append(iteration_dps(s, Rng(base, off + i)))
        if progress is not None and (i + 1) % PROGRESS_EVERY == 0 and i + 1 < n:
            progress(i + 1)
    total = 0.0
    for v in values:
        total = total + v
    mean = total / n
    sq = 0.0
    for v in values:
        sq = sq + (v - mean) * (v - mean)
    std = math.sqrt(sq / (n - 1)) if n > 1 else 0.0
    return {"iterations": n, "meanDps": mean, "stdDps": std,
            "minDps": min(values), "maxDps": max(values)}


class Server:
    def __init__(self):
        self.lock = threading.Lock()
        self.cancels = {}
        self.threads = []
        self.calls = 0

    def send(self, obj):
        line = json.dumps(obj, separators=(",", ":")) + "\n"
        with self.lock:
            sys.stdout.write(line)
            sys.stdout.flush()

    def run_task(self, rid, msg, cancelled):
        def progress(done):
            with self.lock:
                self.calls += 1
                n = self.calls
            self.send({"type": "call", "id": rid, "call": n, "method": "progress", "params": {"done": done}})
        try:
            if msg.get("taskId") != "chunk":
                raise SimError("no task %r (this worker runs \"chunk\")" % msg.get("taskId"), "NOT_FOUND")
            result = simulate(msg.get("input"), progress, cancelled)
            if result is not None:
                self.send({"id": rid, "ok": True, "result": result})
        except SimError as e:
            self.send({"id": rid, "ok": False, "error": {"message": str(e), "code": e.code}})
        except Exception as e:  # a bug: report, keep serving
            self.send({"id": rid, "ok": False, "error": {"message": "sim failed: %s" % e, "code": "EXECUTION_ERROR"}})
        finally:
            with self.lock:
                self.cancels.pop(rid, None)

    def serve(self):
        self.send({"type": "ready", "tasks": ["chunk"], "events": []})
        for line in sys.stdin:
            line = line.strip()
            if not line:
                continue
            try:
                msg = json.loads(line)
                t, rid = msg.get("type"), msg.get("id")
            except (ValueError, AttributeError):
                self.send({"id": 0, "ok": False, "error": {"message": "unparseable line", "code": "INVALID_REQUEST"}})
                continue
            if t == "ping":
                self.send({"id": rid, "ok": True})
            elif t == "task":
                ev = threading.Event()
                with self.lock:
                    self.cancels[rid] = ev
                th = threading.Thread(target=self.run_task, args=(rid, msg, ev), daemon=True)
                self.threads.append(th)
                th.start()
            elif t == "cancel":
                with self.lock:
                    ev = self.cancels.get(rid)
                if ev is not None:
                    ev.set()
            elif t == "event":
                self.send({"id": rid, "ok": False, "error": {"message": "no events here", "code": "NOT_FOUND"}})
            elif t == "shutdown":
                for th in self.threads:
                    th.join()
                self.send({"id": rid, "ok": True})
                return
            # callReply and unknown types need no answer.
            self.threads = [th for th in self.threads if th.is_alive()]


if __name__ == "__main__":
    if len(sys.argv) == 2 and sys.argv[1] == "--once":
        # Debugging aid: simulate the chunk JSON on stdin and print the result.
        print(json.dumps(simulate(json.load(sys.stdin))))
    else:
        Server().serve()
