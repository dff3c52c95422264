"""Sending to a SIEM: a signed HTTPS POST, or octet-counted frames over syslog-over-TLS.

Both go through the SSRF guard (T2): the webhook through the guarded httpx client
(connectors.ssrf.build_client), syslog by resolving the host with the same AddressPolicy and
dialling the vetted address itself, with the host name kept for SNI and certificate checks.
Certificates are always verified (public roots plus the operator's outbound_ca_bundle).
Every failure becomes DeliveryFailed with a short code and a reason that names no data."""

from __future__ import annotations

import asyncio
import ssl

import httpx

from sealflow.connectors.ssrf import AddressPolicy
from sealflow.core.errors import ConnectorError
from sealflow.siem.formats import SIGNATURE_HEADER, signature


class DeliveryFailed(Exception):
    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


async def post_signed(client: httpx.AsyncClient, url: str, secret: bytes, body: bytes, *,
                      timestamp: int, timeout_s: float, content_type: str,
                      headers: dict[str, str] | None = None) -> None:
    """POST `body` with its signature; any 2xx is success."""
    sent = {"Content-Type": content_type,
            SIGNATURE_HEADER: signature(secret, timestamp, body), **(headers or {})}
    try:
        response = await client.post(url, content=body, headers=sent, timeout=timeout_s)
    except ConnectorError as exc:  # the SSRF guard, an unsupported scheme
        raise DeliveryFailed(exc.code, str(exc)) from None
    except httpx.TimeoutException:
        raise DeliveryFailed("timeout", f"no answer within {timeout_s} s") from None
    except httpx.HTTPError as exc:
        raise DeliveryFailed("unreachable", type(exc).__name__) from None
    if not 200 <= response.status_code < 300:
        raise DeliveryFailed(f"http_{response.status_code}",
                             f"the receiver answered {response.status_code}")


async def send_syslog(policy: AddressPolicy, context: ssl.SSLContext, host: str, port: int,
                      data: bytes, *, timeout_s: float) -> None:
    """Open a TLS connection to host:port (vetted address), write `data`, close cleanly."""
    try:
        addresses = await asyncio.wait_for(policy.resolve(host, port), timeout_s)
    except ConnectorError as exc:
        raise DeliveryFailed(exc.code, str(exc)) from None
    except Exception as exc:  # a name that does not resolve, a resolver timeout
        raise DeliveryFailed("unresolvable", f"cannot resolve {host!r} "
                             f"({type(exc).__name__})") from None
    last: Exception | None = None
    for ip in addresses:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(
                str(ip), port, ssl=context, server_hostname=host,
                ssl_handshake_timeout=timeout_s), timeout_s)
        except ssl.SSLError as exc:
            raise DeliveryFailed("tls_failed", f"TLS with {host}:{port} failed "
                                 f"({exc.reason or type(exc).__name__})") from None
        except (OSError, TimeoutError) as exc:
            last = exc
            continue
        try:
            writer.write(data)
            await asyncio.wait_for(writer.drain(), timeout_s)
            writer.close()
            await asyncio.wait_for(writer.wait_closed(), timeout_s)
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            writer.close()
            raise DeliveryFailed("connection_lost",
                                 f"{host}:{port} closed during delivery "
                                 f"({type(exc).__name__})") from None
        del reader
        return
    raise DeliveryFailed("unreachable", f"cannot connect to {host}:{port} "
                         f"({type(last).__name__ if last else 'no address'})")
