"""A real ``mlvec serve`` in a subprocess on a free loopback port, and clients for it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx", reason="the service tests need the 'serve' extra")

READ_KEY = "read-key-0123456789abcdef"
WRITE_KEY = "write-key-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``python -m mlvec serve --data DIR ...``; restartable, killable with SIGKILL."""

    def __init__(self, data: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.data = data
        self.args = list(args)
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.log = data.parent / f"{data.name}-server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, wait_ready: bool = True, timeout: float = 60.0) -> ServerProcess:
        self.port = free_port()
        cmd = [sys.executable, "-m", "mlvec", "serve", "--data", str(self.data), "--port", str(self.port),
               "--log-level", "warning", *self.args]
        self._log = open(self.log, "ab")
        # Its own process group, so that a kill reaches worker processes too (--workers, granian).
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.wait("/livez", timeout)
        if wait_ready:
            self.wait("/readyz", timeout)
        return self

    def wait(self, path: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + path, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.02)
        raise TimeoutError(f"{path} not 200 after {timeout} s:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL to the server's process group: no shutdown hook runs (no final snapshot)."""
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)
        self._close_log()

    def stop(self) -> int:
        """SIGTERM (graceful: final snapshot), returns the exit code."""
        rc = 0
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            rc = self.proc.wait(30)
        self._close_log()
        return rc

    def _close_log(self) -> None:
        if getattr(self, "_log", None) is not None:
            self._log.close()
            self._log = None


@pytest.fixture
def server_factory(tmp_path):
    """``make(*args, data=None, env=None, start=True)``: servers stopped at the end of the test."""
    servers: list[ServerProcess] = []

    def make(*args: str, data: Path | None = None, env: dict[str, str] | None = None, start: bool = True,
             wait_ready: bool = True) -> ServerProcess:
        s = ServerProcess(data or tmp_path / f"data{len(servers)}", *args, env=env)
        servers.append(s)
        return s.start(wait_ready=wait_ready) if start else s

    yield make
    for s in servers:
        s.kill()


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory):
    """One server per module with read and write keys and the embedded e5 encoder."""
    data = tmp_path_factory.mktemp("keyed") / "data"
    env = {"MLVEC_SERVE_READ_KEYS": READ_KEY, "MLVEC_SERVE_WRITE_KEYS": WRITE_KEY}
    s = ServerProcess(data, "--encoder", "e5", "--max-batch", "64", "--max-k", "50", "--max-body-mb", "1",
                      "--max-text-chars", "200", env=env)
    yield s.start(wait_ready=False)
    s.kill()


@pytest.fixture(scope="session")
def api_keys() -> tuple[str, str]:
    """``(read key, write key)`` of ``keyed_server``."""
    return READ_KEY, WRITE_KEY


@pytest.fixture
def writer():
    """An httpx client with the write key, for ``keyed_server``."""
    return lambda server: httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {WRITE_KEY}"},
                                       timeout=60)
