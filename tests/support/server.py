"""Runs the real `sealflow serve` as a subprocess over HTTPS for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.postgres import subprocess_env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    data_dir: Path
    port: int
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca(self) -> str:
        return str(self.data_dir / "tls" / "dev-ca.pem")

    @property
    def operator_token(self) -> str:
        return (self.data_dir / "operator.token").read_text().strip()

    def cli(
        self, *args: str, check: bool = True, input: bytes | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sealflow.cli", "--data-dir", str(self.data_dir), *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
        )

    def start(self, timeout: float = 30.0) -> None:
        self.log_path = self.data_dir / "server.log"
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sealflow.cli",
                "--data-dir",
                str(self.data_dir),
                "--port",
                str(self.port),
                "serve",
            ],
            env=self.env,
            stdout=log,
            stderr=log,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-3000:]}")
            try:
                if Path(self.ca).exists():
                    r = httpx.get(f"{self.url}/healthz", verify=self.client_ssl(), timeout=1)
                    if r.status_code == 200:
                        return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not start: {self.log_path.read_text()[-3000:]}")

    def client_ssl(self) -> Any:
        from sealflow.tls import client_ssl_context

        return client_ssl_context(Path(self.ca))

    def client(self, token: str | None = None, **kw: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(
            base_url=self.url,
            verify=self.client_ssl(),
            headers=headers,
            timeout=kw.pop("timeout", 30),
            **kw,
        )

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def create_account(self, name: str = "Acme", region: str = "us") -> tuple[str, str]:
        with self.client(self.operator_token) as c:
            r = c.post("/v1/accounts", json={"name": name, "region": region})
            r.raise_for_status()
            body = r.json()
            return body["id"], body["token"]


def make_server(tmp: Path, **env_extra: str) -> Server:
    data_dir = tmp / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEALFLOW_")}
    env.update({"SEALFLOW_SSRF_ALLOW": "127.0.0.1/32", "SEALFLOW_LOG_LEVEL": "warning"})
    env.update(subprocess_env(data_dir))  # SEALFLOW_TEST_BACKEND=postgres: cells on PostgreSQL
    env.update(env_extra)
    return Server(data_dir=data_dir, port=free_port(), env=env)
