"""`python -m app` processes forked from one that has already imported the app: the tests' workers.

A worker is a real process of its own (its pid, its session, its signals; kill -9 kills it), running the same
`app.cli.main` as `python -m app worker`, configured from its own environment. Only the ~1 s of imports at
its start is paid once per test session instead of once per worker: the suite starts some 80 workers. The
commands themselves (`python -m app ...` as operators type them) are still run as they are by the tests of
production, make run and the CLI.

The preloading process imports and does nothing else (no thread, no connection, no settings), so a fork of it
is as clean as a fresh interpreter that has run the same imports. It answers on a Unix socket: `spawn` forks
a child with the environment, working directory and standard output and error (passed as descriptors) the
caller gives; `poll` reaps it. `Preloaded.start` returns a handle with the part of `subprocess.Popen`'s
interface the tests use.
"""
from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

MESSAGE = 1 << 20


class PreloadedProcess:
    """A forked `python -m app` process, as a `subprocess.Popen` would show it."""

    def __init__(self, server: "Preloaded", pid: int, args: list[str]):
        self.server, self.pid, self.args, self.returncode = server, pid, args, None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.server.ask({"op": "poll", "pid": self.pid})["returncode"]
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(self.args, timeout)
            time.sleep(0.02)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class Preloaded:
    """The preloading process of one test session; started on first use."""

    def __init__(self, root: str, env: dict):
        self.root, self.env, self.lock, self.process, self.sock = root, env, threading.Lock(), None, None

    def _ensure(self) -> None:
        if self.process is None:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            self.process = subprocess.Popen([sys.executable, "-m", "tests.preloaded", str(theirs.fileno())],
                                            cwd=self.root, env=self.env, pass_fds=[theirs.fileno()],
                                            stdin=subprocess.DEVNULL, start_new_session=True)
            theirs.close()
            self.sock = ours

    def ask(self, request: dict, fds: list[int] = ()) -> dict:
        with self.lock:
            self._ensure()
            socket.send_fds(self.sock, [json.dumps(request).encode()], list(fds))
            reply = self.sock.recv(MESSAGE)
        if not reply:
            raise RuntimeError("the preloading process ended")
        return json.loads(reply)

    def start(self, args: list[str], env: dict, stdout: int | None = None) -> PreloadedProcess:
        """`python -m app *args` with this environment; its stdout and stderr to descriptor `stdout`, else to
        this process's own (pytest's capture of the running test)."""
        out = sys.stdout.fileno() if stdout is None else stdout
        err = sys.stderr.fileno() if stdout is None else stdout
        sys.stdout.flush(), sys.stderr.flush()
        pid = self.ask({"op": "spawn", "args": args, "env": env, "cwd": self.root}, [out, err])["pid"]
        return PreloadedProcess(self, pid, [sys.executable, "-m", "app", *args])

    def stop(self) -> None:
        if self.process is not None:
            self.sock.close()
            self.process.wait(10)


# --- the preloading process --------------------------------------------------------------------------

def _child(sock: socket.socket, request: dict, fds: list[int]) -> None:
    """In the fork: become `python -m app *args` in a session of its own, then exit with its status."""
    code = 1
    try:
        sock.close()
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(fds[0], 1)
        os.dup2(fds[1], 2)
        for fd in {devnull, *fds}:
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = [os.path.join(request["cwd"], "app", "__main__.py"), *request["args"]]
        from app.cli import main

        code = main(request["args"])
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        try:
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code or 0)


def _serve(sock: socket.socket) -> None:
    while True:
        message, fds, _, _ = socket.recv_fds(sock, MESSAGE, 2)
        if not message:
            return
        request = json.loads(message)
        if request["op"] == "spawn":
            sys.stdout.flush(), sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _child(sock, request, fds)
            for fd in fds:
                os.close(fd)
            reply = {"pid": pid}
        elif request["op"] == "poll":
            done, status = os.waitpid(request["pid"], os.WNOHANG)
            reply = {"returncode": os.waitstatus_to_exitcode(status) if done else None}
        else:
            raise ValueError(f"unknown request {request['op']!r}")
        sock.send(json.dumps(reply).encode())


def _preload() -> None:
    """What a worker imports on its way to its first jobs."""
    import app.cli  # noqa: F401  (every command and the worker)
    from app.jobs import load_tasks

    load_tasks()
    from PIL import Image

    Image.init()
    import azure.ai.ml.entities  # noqa: F401  (app.azureml imports these when a version is registered)
    import azure.identity  # noqa: F401


if __name__ == "__main__":
    _preload()
    _serve(socket.socket(fileno=int(sys.argv[1])))
