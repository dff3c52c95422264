"""Helpers for tests that drive workflows through the real API."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import yaml

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example(name: str, **hosts: str) -> dict[str, Any]:
    """Load examples/<name>, pointing its example.test hosts at local servers."""
    text = (EXAMPLES / name).read_text()
    for host, url in hosts.items():
        text = text.replace(f"https://{host}", url)
    return yaml.safe_load(text)


def save(client: httpx.Client, definition: dict[str, Any] | str) -> dict[str, Any]:
    r = client.post("/v1/workflows", json={"definition": definition})
    assert r.status_code == 201, r.text
    return r.json()


def get_paced(client: httpx.Client, url: str, tries: int = 50) -> httpx.Response:
    """GET, waiting out the API's rate limit (429) as any client must."""
    for _ in range(tries):
        r = client.get(url)
        if r.status_code != 429:
            return r
        time.sleep(float(r.headers.get("Retry-After", "0.2")))
    return r


def wait_done(client: httpx.Client, execution_id: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get(f"/v1/executions/{execution_id}")
        if r.status_code == 429:  # many waits in a row: the API's rate limit, as for anyone
            time.sleep(float(r.headers.get("Retry-After", "0.2")))
            continue
        assert r.status_code == 200, r.text
        body = r.json()
        if body["status"] in ("succeeded", "failed", "cancelled"):
            return body
        time.sleep(0.05)
    raise AssertionError(f"execution {execution_id} did not finish: {body}")


def run(
    client: httpx.Client, workflow_id: str, payload: Any = None, timeout: float = 30
) -> dict[str, Any]:
    r = client.post(f"/v1/workflows/{workflow_id}/run", json={"input": payload})
    assert r.status_code == 202, r.text
    return wait_done(client, r.json()["execution_id"], timeout)
