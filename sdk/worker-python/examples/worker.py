"""Example worker: python3 sdk/worker-python/examples/worker.py"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from switchboard_worker import Worker  # noqa: E402


def add(input, ctx):
    return input["a"] + input["b"]


def notify(payload, ctx):
    print("notify", payload, "from", ctx.context.get("path") or ctx.context.get("user"))


if __name__ == "__main__":
    Worker(tasks={"app.tasks.add": add}, events={"app.events.notify": notify}).run()
