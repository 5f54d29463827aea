"""`hil serve` in a subprocess, as a user starts it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.hil.api.conftest import TOKENS

TOKEN = TOKENS["admin"].secret


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServeProcess:
    """``hil serve CONFIG --port P --data-dir DATA`` with ``HIL_API_TOKEN`` set."""

    def __init__(self, config: Path, data: Path, *args: str, token: str | None = TOKEN) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if k != "HIL_API_TOKEN"}
        if token is not None:
            self.env["HIL_API_TOKEN"] = token
        command = [sys.executable, "-m", "hil.cli", "serve", str(config), "--port", str(self.port)]
        command += ["--data-dir", str(data), "--config-root", str(config.parent), *args]
        self.process = subprocess.Popen(
            command,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stderr = ""

    def __enter__(self) -> ServeProcess:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"hil serve exited: {self.process.communicate()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError("hil serve did not come up")

    def stop(self, signum: int, timeout: float = 60) -> int:
        self.process.send_signal(signum)
        _, self.stderr = self.process.communicate(timeout=timeout)
        return self.process.returncode

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()
