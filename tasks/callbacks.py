"""Task callbacks on the wire: which URLs a task may name, signing, and one POST.

A callback URL is chosen by whoever submits the task, often an agent, so HOL must not become a
way into the network it runs in. A URL is https (plain http only for a host in
HOL_CALLBACK_ALLOWED_HOSTS), carries no credentials, and reaches no private, loopback, link-local
or otherwise internal address unless its host is allowlisted. Intake refuses what it can tell
without DNS (IP literals, `localhost`); at send time the host is resolved, every address is
checked, and the connection goes to the checked address, so a name that resolves differently a
moment later (DNS rebinding) gains nothing. Redirects are never followed; the response body is
read no further than a few bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from hol.errors import BadRequest

MAX_URL_LENGTH = 2048
MAX_RESPONSE_BYTES = 1024
SIGNATURE_HEADER = "X-HOL-Signature"
TIMESTAMP_HEADER = "X-HOL-Timestamp"
INVALID_CALLBACK_URL = "invalid_callback_url"


class CallbackRefused(Exception):
    """The URL or the address it resolves to may not be called; retrying will not help."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str  # path and query, as sent in the request line
    allowlisted: bool


# IPv6 ranges that carry or reach an IPv4 address (NAT64, 6to4, IPv4-compatible) or are
# deprecated site-local: a callback there could end up inside the network.
_IPV6_TUNNELS = tuple(
    ipaddress.IPv6Network(net) for net in ("64:ff9b::/96", "64:ff9b:1::/48", "2002::/16", "::/96", "fec0::/10")
)
_IPV6_UNICAST = ipaddress.IPv6Network("2000::/3")


def _is_internal(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        elif address not in _IPV6_UNICAST or any(address in net for net in _IPV6_TUNNELS):
            return True
    return not address.is_global or address.is_multicast


def _parse(url: str, allowed_hosts: Sequence[str]) -> Target:
    """The URL's parts once it passes every check that needs no DNS; ValueError says why not."""
    if not isinstance(url, str) or not url:
        raise ValueError("callback_url must be a URL")
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"callback_url is longer than {MAX_URL_LENGTH} characters")
    if any(ord(char) < 0x21 or ord(char) >= 0x7F for char in url):
        raise ValueError("callback_url must be ASCII without spaces or control characters (percent-encode the rest)")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError("callback_url is not a valid URL") from None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower().rstrip(".")
    if scheme not in ("https", "http"):
        raise ValueError("callback_url must be https")
    if not host:
        raise ValueError("callback_url has no host")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ValueError("callback_url must not carry credentials")
    allowlisted = host in allowed_hosts
    if scheme == "http" and not allowlisted:
        raise ValueError("callback_url must be https (plain http only for hosts in HOL_CALLBACK_ALLOWED_HOSTS)")
    if not allowlisted:
        if host == "localhost" or host.endswith(".localhost"):
            raise ValueError("callback_url must not point at this machine")
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None and _is_internal(literal):
            raise ValueError("callback_url must not point at a private, loopback or link-local address")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(
        scheme=scheme, host=host, port=port or (443 if scheme == "https" else 80), path=path, allowlisted=allowlisted
    )


def check_callback_url(url: str, *, allowed_hosts: Sequence[str]) -> str:
    """Intake: the URL as stored, or 400 `invalid_callback_url` with the reason."""
    try:
        _parse(url, allowed_hosts)
    except ValueError as exc:
        raise BadRequest(str(exc), code=INVALID_CALLBACK_URL) from None
    return url


def resolve(target: Target) -> str:
    """The address to connect to: the host's first address, once every address it resolves to
    is allowed (an allowlisted host may resolve anywhere)."""
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise ConnectionError(f"cannot resolve the callback host: {type(exc).__name__}") from None
    addresses = [info[4][0] for info in infos]
    if not addresses:
        raise ConnectionError("the callback host has no address")
    if not target.allowlisted:
        for address in addresses:
            if _is_internal(ipaddress.ip_address(address.split("%", 1)[0])):
                raise CallbackRefused("the callback host resolves to a private, loopback or link-local address")
    return addresses[0]


def signature(secret: str, body: bytes) -> str:
    """What X-HOL-Signature carries: `sha256=` and the hex HMAC-SHA256 of the body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str) -> bool:
    """How a receiver checks a callback (constant-time comparison)."""
    return hmac.compare_digest(signature(secret, body), header or "")


@dataclass(frozen=True)
class Delivery:
    status_code: int | None  # None: no answer (refused, unreachable, timed out)
    error: str  # empty when delivered
    retryable: bool

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def post(url: str, *, body: bytes, headers: dict[str, str], allowed_hosts: Sequence[str], timeout: float) -> Delivery:
    """One POST of `body` to `url` after the send-time checks. Connection errors, timeouts and 5xx
    are retryable; a refused URL, a redirect (never followed) and any other status are not."""
    try:
        target = _parse(url, allowed_hosts)
        address = resolve(target)
    except (ValueError, CallbackRefused) as exc:
        return Delivery(status_code=None, error=f"refused: {exc}", retryable=False)
    except ConnectionError as exc:
        return Delivery(status_code=None, error=str(exc), retryable=True)
    connection_class = http.client.HTTPSConnection if target.scheme == "https" else http.client.HTTPConnection
    connection = connection_class(target.host, target.port, timeout=timeout)
    # Connect to the address checked above, not to whatever the name resolves to next; https still
    # verifies the certificate against the host name.
    connection._create_connection = lambda address_port, *args, **kwargs: socket.create_connection(
        (address, address_port[1]), *args, **kwargs
    )
    try:
        connection.request("POST", target.path, body=body, headers=headers)
        response = connection.getresponse()
        response.read(MAX_RESPONSE_BYTES)
        code = response.status
    except (OSError, http.client.HTTPException) as exc:
        return Delivery(status_code=None, error=f"no answer: {type(exc).__name__}", retryable=True)
    finally:
        connection.close()
    if 200 <= code < 300:
        return Delivery(status_code=code, error="", retryable=False)
    if 300 <= code < 400:
        return Delivery(status_code=code, error=f"answered {code}: redirects are not followed", retryable=False)
    return Delivery(status_code=code, error=f"answered {code}", retryable=code >= 500)
