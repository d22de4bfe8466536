"""Network checks: sysfs and procfs as the kernel writes them, TCP on loopback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from script.harness.mosquitto import Broker
from script.harness.procs import free_port
from smartserver_agent import network
from smartserver_agent.config import Target

ROUTE_V4 = """\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
"""
ROUTE_V4_NONE = ROUTE_V4.splitlines()[0] + "\neth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
V6_DEFAULT = (
    "00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
    "fd000000000000000000000000000001 00000400 00000002 00000000 00000003     eth0\n"
)
# the kernel's unreachable default on lo: RTF_REJECT, never a real route
V6_REJECT = (
    "00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
    "00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n"
)
V6_LINK = (
    "fe800000000000000000000000000000 40 00000000000000000000000000000000 00 "
    "00000000000000000000000000000000 00000100 00000002 00000000 00000001     eth0\n"
)


def sysfs(root: Path, name: str, operstate: str, carrier: str | None, physical: bool) -> None:
    iface = root / name
    iface.mkdir(parents=True)
    (iface / "operstate").write_text(operstate + "\n")
    if carrier is not None:
        (iface / "carrier").write_text(carrier + "\n")
    if physical:
        (iface / "device").mkdir()


@pytest.fixture
def sys_net(tmp_path: Path) -> Path:
    root = tmp_path / "sys" / "class" / "net"
    sysfs(root, "eth0", "up", "1", physical=True)
    sysfs(root, "eth1", "down", None, physical=True)  # carrier unreadable while down
    sysfs(root, "wlan0", "dormant", "0", physical=True)
    sysfs(root, "lo", "unknown", "1", physical=False)
    sysfs(root, "br0", "up", "1", physical=False)
    sysfs(root, "veth12", "up", "1", physical=False)
    return root


def proc(tmp_path: Path, v4: str, v6: str) -> Path:
    root = tmp_path / "proc" / "net"
    root.mkdir(parents=True, exist_ok=True)
    (root / "route").write_text(v4)
    (root / "ipv6_route").write_text(v6)
    return root


def test_physical_interfaces_skip_loopback_and_virtual(sys_net: Path) -> None:
    assert network.physical_interfaces(sys_net) == ["eth0", "eth1", "wlan0"]
    assert network.physical_interfaces(sys_net / "missing") == []


def test_links(sys_net: Path) -> None:
    links = {x.name: x for x in network.links(["eth0", "eth1", "wlan0", "lo", "nope"], sys_net)}
    assert links["eth0"].up
    assert links["eth0"].carrier is True
    assert not links["eth1"].up
    assert links["eth1"].carrier is None
    assert not links["wlan0"].up
    assert links["lo"].up  # "unknown" with a carrier: drivers that do not report operstate
    assert links["nope"].operstate == "absent"
    assert not links["nope"].up


@pytest.mark.parametrize(
    ("v4", "v6", "expected"),
    [
        (ROUTE_V4, V6_LINK + V6_DEFAULT + V6_REJECT, (True, True)),
        (ROUTE_V4, V6_LINK + V6_REJECT, (True, False)),
        (ROUTE_V4_NONE, V6_DEFAULT, (False, True)),
        (ROUTE_V4_NONE, V6_REJECT, (False, False)),
        ("", "", (False, False)),
        ("garbage\nmore garbage here\n", "x y z\n", (False, False)),
    ],
)
def test_default_routes(tmp_path: Path, v4: str, v6: str, expected: tuple[bool, bool]) -> None:
    assert network.default_routes(proc(tmp_path, v4, v6)) == expected


def test_default_routes_without_procfs(tmp_path: Path) -> None:
    assert network.default_routes(tmp_path / "missing") == (False, False)


def test_reach_loopback(mosquitto: Broker) -> None:
    ok = network.reach(Target("127.0.0.1", mosquitto.port))
    assert ok.ok
    assert ok.ms is not None
    assert ok.error is None
    closed = network.reach(Target("127.0.0.1", free_port()))
    assert not closed.ok
    assert closed.error == "Connection refused"


def test_report_all_good(mosquitto: Broker, sys_net: Path, tmp_path: Path) -> None:
    target = Target("127.0.0.1", mosquitto.port)
    report = network.check(target, ("eth0",), sys_net, proc(tmp_path, ROUTE_V4, V6_REJECT))
    assert report.problems == []
    data = json.loads(report.to_json())
    assert [data[k] for k in ("ok", "link", "default_route", "reachable")] == [True] * 4
    assert data["interfaces"] == {"eth0": {"up": True, "operstate": "up", "carrier": True}}
    assert data["routes"] == {"ipv4": True, "ipv6": False}
    assert data["target"] == f"127.0.0.1:{mosquitto.port}"
    assert "reachability of" in report.lines()[-1]


def test_report_names_every_problem(mosquitto: Broker, sys_net: Path, tmp_path: Path) -> None:
    target = Target("127.0.0.1", free_port())
    report = network.check(target, None, sys_net, proc(tmp_path, ROUTE_V4_NONE, V6_REJECT))
    assert report.problems == [
        "eth1: link down",
        "wlan0: link dormant",
        "no default route (IPv4 or IPv6)",
        f"127.0.0.1:{target.port} not reachable: Connection refused",
    ]
    data = report.as_dict()
    assert [data[k] for k in ("ok", "link", "default_route", "reachable")] == [False] * 4
    assert "default route: NONE" in report.lines()


def test_no_physical_interface_is_a_problem(mosquitto: Broker, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    report = network.check(Target("127.0.0.1", mosquitto.port), None, empty, proc(tmp_path, ROUTE_V4, ""))
    assert report.problems == ["no physical network interface found"]
    assert not report.link
