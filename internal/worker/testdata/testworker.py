import os
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../../sdk/worker-python"))

from switchboard_worker import Worker, WorkerError  # noqa: E402


def add(input, ctx):
    return input["a"] + input["b"]


async def async_add(input, ctx):
    return input["a"] + input["b"]


def sleep(input, ctx):
    ctx.cancelled.wait(input["ms"] / 1000.0)
    return input["ms"]


def fail(input, ctx):
    raise WorkerError(input.get("message", "boom"), input.get("code", "EXECUTION_ERROR"))


def echo(input, ctx):
    return {"input": input, "context": ctx.context}


if __name__ == "__main__":
    Worker(tasks={"app.tasks.add": add, "test.asyncadd": async_add, "test.sleep": sleep,
                  "test.fail": fail, "test.echo": echo, "test.pid": lambda i, c: os.getpid()},
           events={"app.events.notify": lambda p, c: None}, concurrency=16).run()
