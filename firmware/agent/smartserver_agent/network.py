"""Network validation: link of physical interfaces, default routes, TCP reachability."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import Target

SYS_NET = Path("/sys/class/net")
PROC_NET = Path("/proc/net")
RTF_UP = 0x1
RTF_REJECT = 0x200
CONNECT_TIMEOUT = 3.0


@dataclass(frozen=True, slots=True)
class Link:
    """One interface's link as the kernel reports it."""

    name: str
    operstate: str
    carrier: bool | None

    @property
    def up(self) -> bool:
        """Up, or "unknown" with a carrier (drivers that do not report operstate)."""
        return self.operstate == "up" or (self.operstate == "unknown" and bool(self.carrier))


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:  # e.g. carrier of an interface that is down: EINVAL
        return None


def physical_interfaces(sys_net: Path = SYS_NET) -> list[str]:
    """Interfaces backed by a device: loopback, bridges, veth, tun and the like have none."""
    try:
        names = sorted(entry.name for entry in sys_net.iterdir())
    except OSError:
        return []
    return [name for name in names if (sys_net / name / "device").exists()]


def links(names: list[str], sys_net: Path = SYS_NET) -> list[Link]:
    """Read operstate and carrier of each interface; a missing one reads as "absent"."""
    result = []
    for name in names:
        operstate = _read(sys_net / name / "operstate")
        carrier = _read(sys_net / name / "carrier")
        result.append(Link(name, operstate or "absent", None if carrier is None else carrier == "1"))
    return result


def default_routes(proc_net: Path = PROC_NET) -> tuple[bool, bool]:
    """Whether an IPv4 and an IPv6 default route are up (reject routes do not count)."""
    ipv4 = ipv6 = False
    for line in (_read(proc_net / "route") or "").splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 8 and fields[1] == "00000000" and fields[7] == "00000000":
            ipv4 |= _flags(fields[3]) & RTF_UP != 0
    for line in (_read(proc_net / "ipv6_route") or "").splitlines():
        fields = line.split()
        if len(fields) >= 10 and fields[0] == "0" * 32 and fields[1] == "00" and fields[9] != "lo":
            flags = _flags(fields[8])
            ipv6 |= flags & RTF_UP != 0 and flags & RTF_REJECT == 0
    return ipv4, ipv6


def _flags(text: str) -> int:
    try:
        return int(text, 16)
    except ValueError:
        return 0


@dataclass(frozen=True, slots=True)
class Reach:
    """Result of one TCP connect."""

    ok: bool
    ms: float | None
    error: str | None


def reach(target: Target, timeout: float = CONNECT_TIMEOUT) -> Reach:
    """Open and close a TCP connection to the target."""
    start = time.monotonic()
    try:
        with socket.create_connection((target.host, target.port), timeout=timeout):
            return Reach(True, round((time.monotonic() - start) * 1000, 1), None)
    except OSError as err:
        return Reach(False, None, err.strerror or str(err) or type(err).__name__)


@dataclass(frozen=True, slots=True)
class Report:
    """Everything a network check found; published as JSON on `network`."""

    links: list[Link]
    ipv4_route: bool
    ipv6_route: bool
    target: Target
    reach: Reach
    checked: float = field(default_factory=time.time)

    @property
    def link(self) -> bool:
        """At least one checked interface and every one of them up."""
        return bool(self.links) and all(link.up for link in self.links)

    @property
    def default_route(self) -> bool:
        """An IPv4 or an IPv6 default route."""
        return self.ipv4_route or self.ipv6_route

    @property
    def problems(self) -> list[str]:
        """What is wrong, in words; empty when the network is fine."""
        found = []
        if not self.links:
            found.append("no physical network interface found")
        found += [f"{x.name}: link {x.operstate}" for x in self.links if not x.up]
        if not self.default_route:
            found.append("no default route (IPv4 or IPv6)")
        if not self.reach.ok:
            found.append(f"{self.target} not reachable: {self.reach.error}")
        return found

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON document: link, default_route and reachable on top, details below."""
        return {
            "ok": not self.problems,
            "link": self.link,
            "default_route": self.default_route,
            "reachable": self.reach.ok,
            "interfaces": {
                x.name: {"up": x.up, "operstate": x.operstate, "carrier": x.carrier} for x in self.links
            },
            "routes": {"ipv4": self.ipv4_route, "ipv6": self.ipv6_route},
            "target": str(self.target),
            "latency_ms": self.reach.ms,
            "error": self.reach.error,
            "problems": self.problems,
            "checked": int(self.checked),
        }

    def to_json(self) -> str:
        """Compact JSON for MQTT."""
        return json.dumps(self.as_dict(), separators=(",", ":"))

    def lines(self) -> list[str]:
        """Human-readable lines for `smartserver-agent check`."""
        out = [f"interface {x.name}: {'up' if x.up else 'DOWN'} ({x.operstate})" for x in self.links]
        routes = [name for name, ok in (("IPv4", self.ipv4_route), ("IPv6", self.ipv6_route)) if ok]
        out.append(f"default route: {', '.join(routes) or 'NONE'}")
        out.append(
            f"reachability of {self.target}: "
            + (f"ok ({self.reach.ms} ms)" if self.reach.ok else f"FAILED ({self.reach.error})")
        )
        return out


def check(
    target: Target,
    interfaces: tuple[str, ...] | None = None,
    sys_net: Path = SYS_NET,
    proc_net: Path = PROC_NET,
) -> Report:
    """Run every check; blocking (up to the connect timeout), so callers use a thread."""
    names = list(interfaces) if interfaces else physical_interfaces(sys_net)
    ipv4, ipv6 = default_routes(proc_net)
    return Report(links(names, sys_net), ipv4, ipv6, target, reach(target))
