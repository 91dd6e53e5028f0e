"""Server addresses: reading a list of them, and moving along it when a server goes away.

``address="127.0.0.1:5001,127.0.0.1:5002"`` (or ``address=["a:1", "b:2"]``, ``DSPEX_ADDRESS``
with commas, ``--address``, ``DspexMagics.address``, ``%var connect``) names several servers,
typically stateless servers over one shared store. A context connects to the first that
answers; when the server it talks to goes away (UNAVAILABLE: connection refused, a killed
process), its :class:`~._connect.Locator` asks :class:`Rotation` for the next one: the addresses
after the current one, round-robin (the current one last: it may have come back), each probed
with a ``Ping`` and, once the session was set up, the session's initialization. A bounded
number of rounds with backoff between them, each failed probe and the move reported in one
line (``notify``). The token of each address is the one the caller gave, else that server's
runtime file's, as for a single address.

Only the network moves a context: a refused token is a setting to fix, not a server to skip.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import _runtime
from ._errors import AuthenticationError, DspexError, InvalidArgument
from ._wire.client import Bridge, insecure_channel
from ._wire.status import BridgeUnavailable

log = logging.getLogger("dspex_notebook")

#: a host name (RFC 1123 labels, ``_`` tolerated as resolvers do), an IPv4 address, or the
#: inside of ``[...]`` for IPv6
_HOST_RE = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]{0,252})$")
#: gRPC's own target schemes for local sockets, passed on as written
_SOCKET_SCHEMES = ("unix:", "unix-abstract:")

Addresses = str | Sequence[str]


# ----------------------------------------------------------------------------------------------
# reading addresses


def _split(address: str) -> tuple[str, str]:
    host, _, port = address.rpartition(":")
    return host.strip("[]").lower(), port


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def same_address(a: str, b: str) -> bool:
    """``localhost:50051``, ``127.0.0.1:50051`` and ``[::1]:50051`` are one local server."""
    (ha, pa), (hb, pb) = _split(a), _split(b)
    return pa == pb and (ha == hb or (_loopback(ha) and _loopback(hb)))


def server_at(address: str) -> dict[str, Any] | None:
    """The runtime file of the running server listening on ``address``, if there is one."""
    for info in _runtime.list_servers():
        if same_address(str(info.get("address", "")), address):
            return info
    return None


def _check(entry: str) -> str | None:
    """What is wrong with one ``HOST:PORT`` entry, or None."""
    if entry.startswith(_SOCKET_SCHEMES):
        return None if entry.split(":", 1)[1] else "names no socket path"
    if "://" in entry or "/" in entry:
        return "is not HOST:PORT (no scheme or path: e.g. 127.0.0.1:50051)"
    host, colon, port = entry.rpartition(":")
    if not colon or not host:
        return "has no port (HOST:PORT, e.g. 127.0.0.1:50051)" if not colon else "has no host"
    if not port.isdigit():
        return f"has no port number after the last ':' (got {port!r})"
    if not 1 <= int(port) <= 65535:
        return f"port {int(port)} is not a TCP port (1-65535)"
    if host.startswith("["):
        if not host.endswith("]"):
            return "has an unclosed '[' (IPv6 is written [::1]:50051)"
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return f"{host} is not an IPv6 address"
        return None
    if ":" in host:
        return "has an IPv6 address without brackets (write [::1]:50051)"
    if not _HOST_RE.match(host):
        return f"host {host!r} is not a host name or IP address"
    return None


def parse_addresses(value: Addresses, what: str = "address") -> list[str]:
    """The server addresses ``value`` names, in order.

    Parameters:
        value: ``"HOST:PORT"``, comma-separated ``"HOST:PORT,HOST:PORT"``, or a sequence of
            those. ``unix:PATH`` targets are taken as written.
        what: how the caller calls the setting, for errors (``--address``, ``DSPEX_ADDRESS``).

    Raises:
        InvalidArgument: (a ``ValueError``) an entry is empty, not ``HOST:PORT`` or names the
            same server as an earlier one; the message quotes the entry and its position.
    """
    if isinstance(value, str):
        items: Sequence[Any] = [value]
    elif isinstance(value, Sequence):
        items = value
    else:
        raise InvalidArgument(f"{what} must be 'HOST:PORT', 'HOST:PORT,HOST:PORT' or a list of "
                              f"them, got {type(value).__name__}")
    entries: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise InvalidArgument(f"{what}: {item!r} is not a string (HOST:PORT)")
        entries.extend(part.strip() for part in item.split(","))
    if not entries or entries == [""]:
        raise InvalidArgument(f"{what or 'the address'} is empty: give HOST:PORT, or several "
                              "separated by commas")
    many = len(entries) > 1
    out: list[str] = []
    for n, entry in enumerate(entries, 1):
        # "--address entry 2 of 3, 'x:y', has no port number ..." / "address 'x' has no port"
        where = (f"{what} entry {n} of {len(entries)}".lstrip() + f", {entry!r}," if many
                 else f"{what} {entry!r}".lstrip())
        if not entry:
            raise InvalidArgument(f"{what} entry {n} of {len(entries)} is empty".lstrip()
                                  + f" ({','.join(entries)!r}: a stray comma?)")
        problem = _check(entry)
        if problem is not None:
            raise InvalidArgument(f"{where} {problem}")
        twin = next((i for i, seen in enumerate(out, 1) if same_address(seen, entry)), None)
        if twin is not None:
            raise InvalidArgument(f"{where} names the same server as entry {twin} "
                                  f"({out[twin - 1]!r})")
        out.append(entry)
    return out


def joined(addresses: Sequence[str]) -> str:
    """``"a:1,b:2"``: a list as the settings write it."""
    return ",".join(addresses)


# ----------------------------------------------------------------------------------------------
# moving along the list


def reason(error: BaseException) -> str:
    """A short cause for one failed probe (``connection refused``, ...)."""
    text = str(error)
    lowered = text.lower()
    if "connection refused" in lowered:
        return "connection refused"
    if isinstance(error, AuthenticationError):
        return "refused the token"
    code = getattr(error, "code", None)
    name = getattr(code() if callable(code) else None, "name", "")
    if name == "DEADLINE_EXCEEDED":
        return "no answer in time"
    return text if len(text) <= 160 else text[:157] + "..."


@dataclass
class Found:
    """A server that answered a probe: its address, the token it took, and the bridge (whose
    channel the context takes over)."""

    address: str
    token: str | None
    probe: Bridge
    info: dict[str, Any] | None


@dataclass
class Rotation:
    """A context's address list, where it is in it, and how it moves on (module docstring).

    Parameters:
        addresses: the list, in the caller's order (at least two).
        token: the token the caller gave for every address (None: each server's runtime file).
        rounds: how many times the whole list is probed before giving up.
        backoff: seconds before the second round, doubling up to the second value.
        probe_timeout: seconds one probe may wait (a refused connection answers at once).
    """

    addresses: list[str]
    token: str | None = None
    rounds: int = 3
    backoff: tuple[float, float] = (0.1, 1.0)
    probe_timeout: float = 5.0
    index: int = 0
    #: the last probe's outcome per address (for the error when every address failed)
    outcomes: dict[str, str] = field(default_factory=dict)
    #: monotonic time at which a search last gave up (calls that waited for it give up too)
    gave_up_at: float = -1.0

    @property
    def current(self) -> str:
        return self.addresses[self.index]

    def order(self) -> list[str]:
        """The addresses to try, the next one first and the current one last."""
        i = self.index
        return self.addresses[i + 1:] + self.addresses[:i + 1]

    def tokens_for(self, address: str) -> tuple[list[str | None], dict[str, Any] | None]:
        """Tokens to offer ``address`` (the caller's, then its runtime file's) and its file."""
        info = server_at(address)
        tokens: list[str | None] = [self.token] if self.token else []
        file_token = info.get("token") if info else None
        if file_token and file_token not in tokens:
            tokens.append(str(file_token))
        return tokens or [None], info

    async def probe(self, address: str, init: Callable[[Bridge], Awaitable[None]],
                    timeout: float | None) -> Found | str:
        """Ping ``address`` (and set the session up there): the server found, or why not."""
        tokens, info = self.tokens_for(address)
        why = "no answer"
        limit = self.probe_timeout if timeout is None else min(timeout, self.probe_timeout)
        for token in tokens:
            bridge = Bridge(insecure_channel(address), token, limit)
            try:
                await bridge.ping("dspex_notebook")
                await init(bridge)
            except AuthenticationError as exc:
                why = reason(exc)
                await bridge.close()
                continue  # the runtime file may hold the token that works
            except (DspexError, ConnectionError) as exc:
                await bridge.close()
                return reason(exc)
            except BaseException:
                await bridge.close()
                raise
            return Found(address, token, bridge, info)
        return why

    async def search(self, init: Callable[[Bridge], Awaitable[None]], timeout: float | None,
                     report: Callable[[str], None], since: float) -> Found | None:
        """Probe the list round-robin, at most :attr:`rounds` times; None when nothing
        answered. ``since``: when the caller started waiting (a search that gave up after that
        is not repeated for it)."""
        if self.gave_up_at >= since:
            return None
        delay = self.backoff[0]
        for round_ in range(1, self.rounds + 1):
            for address in self.order():
                outcome = await self.probe(address, init, timeout)
                if isinstance(outcome, Found):
                    self.index = self.addresses.index(address)
                    self.outcomes.pop(address, None)
                    return outcome
                self.outcomes[address] = outcome
                report(f"dspex_notebook: {address} did not answer ({outcome})")
            if round_ < self.rounds:
                report(f"dspex_notebook: no server of {joined(self.addresses)} answered; trying "
                       f"again in {delay:.1f} s (round {round_ + 1} of {self.rounds})")
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff[1])
        self.gave_up_at = time.monotonic()
        return None

    def failure(self, error: BridgeUnavailable) -> BridgeUnavailable:
        """The error once every address failed: each address and what it answered."""
        each = "; ".join(f"{a}: {self.outcomes.get(a, 'not tried')}" for a in self.addresses)
        return BridgeUnavailable(
            f"no server answered at any of the {len(self.addresses)} addresses "
            f"({self.rounds} rounds): {each} (last error: {error})", error.code())
