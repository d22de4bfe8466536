"""smartserver-node: manage a node over MQTT (docs/management.md)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from .client import Connection, Node, NodeError
from .firmware import build_firmware
from .mgmt_framing import app_version, is_micropython

COLOURS = {
    "debug": "\033[2m",
    "info": "",
    "warning": "\033[33m",
    "error": "\033[31m",
    "critical": "\033[1;31m",
}
RESET = "\033[0m"


def _secret(value: str | None, file: str | None, env: str) -> str | None:
    if file:
        return Path(file).read_text().strip()
    return value or os.environ.get(env)


def parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    p = argparse.ArgumentParser(prog="smartserver-node", description=__doc__)
    p.add_argument("--host", required=True, help="MQTT broker host")
    p.add_argument("--port", type=int, default=8883)
    p.add_argument("--ca", help="CA certificate (PEM) the broker's certificate is verified with")
    p.add_argument("--user", default=os.environ.get("SMARTSERVER_MQTT_USER"))
    p.add_argument("--password-file", help="file with the MQTT password (or SMARTSERVER_MQTT_PASSWORD)")
    p.add_argument(
        "--insecure-plain-mqtt", action="store_true", help="no TLS at all: passwords travel in clear text"
    )
    p.add_argument("--base", default="home", help="base topic (default: home)")
    p.add_argument("--node", required=True, help="node id")
    p.add_argument("--key-file", help="file with the node's key (or SMARTSERVER_NODE_KEY)")
    p.add_argument("--timeout", type=float, default=15, help="seconds to wait for the node")
    sub = p.add_subparsers(dest="command", required=True)
    put = sub.add_parser("put", help="copy a local file to the node")
    put.add_argument("local")
    put.add_argument("remote")
    get = sub.add_parser("get", help="copy a file from the node ('-' for stdout)")
    get.add_argument("remote")
    get.add_argument("local")
    ls = sub.add_parser("ls", help="list a directory on the node")
    ls.add_argument("path", nargs="?", default="")
    rm = sub.add_parser("rm", help="remove a file on the node")
    rm.add_argument("path")
    sub.add_parser("reboot", help="reboot the node")
    ev = sub.add_parser("eval", help="evaluate an expression (needs mgmt.eval on the board)")
    ev.add_argument("expression")
    ex = sub.add_parser("exec", help="run statements (needs mgmt.eval on the board)")
    ex.add_argument("code")
    logs = sub.add_parser("logs", help="show the node's log lines, coloured by level")
    logs.add_argument("--follow", "-f", action="store_true", help="keep showing new lines")
    up = sub.add_parser("update", help="install the firmware from a source folder (firmware/esp32)")
    up.add_argument("source", type=Path)
    up.add_argument("--mpy-cross", default="mpy-cross")
    up.add_argument("--confirm-timeout", type=float, default=900)
    im = sub.add_parser("image", help="install a MicroPython image (an ESP32 OTA build's .app-bin)")
    im.add_argument("file", type=Path)
    im.add_argument("--confirm-timeout", type=float, default=900)
    return p


def run(args: argparse.Namespace) -> int:
    """Run one command; return the exit status."""
    if not args.ca and not args.insecure_plain_mqtt:
        print("smartserver-node: --ca is required (or --insecure-plain-mqtt)", file=sys.stderr)
        return 2
    if args.insecure_plain_mqtt:
        print("smartserver-node: warning: MQTT without TLS", file=sys.stderr)
    image = None
    if args.command == "image":
        # checked before connecting: a wrong file is the likely mistake
        image = args.file.read_bytes()
        if not is_micropython(image):
            print(
                f"smartserver-node: {args.file} is not a MicroPython ESP32 app image: take the OTA build's "
                ".app-bin, not the full flash image (docs/management.md)",
                file=sys.stderr,
            )
            return 2
    key = _secret(None, args.key_file, "SMARTSERVER_NODE_KEY")
    if not key:
        print(
            "smartserver-node: the node's key is needed (--key-file or SMARTSERVER_NODE_KEY)", file=sys.stderr
        )
        return 2
    conn = Connection(
        args.host,
        args.port,
        args.ca,
        args.user,
        _secret(None, args.password_file, "SMARTSERVER_MQTT_PASSWORD"),
        args.insecure_plain_mqtt,
    )
    with Node(conn, args.base, args.node, key, timeout=args.timeout) as node:
        if image is not None:
            return _image(node, args, image)
        return _command(node, args)


def _image(node: Node, args: argparse.Namespace, image: bytes) -> int:
    print(f"installing MicroPython image {app_version(image)} ({len(image)} bytes) on {args.node}")
    info = node.image(image, _progress("written"), confirm_timeout=args.confirm_timeout)
    print(f"\nMicroPython image {info['image']['version']} confirmed by {args.node}")
    return 0


def _progress(word: str) -> Callable[[int, int], None]:
    def progress(done: int, total: int) -> None:
        print(f"\r{done * 100 // total:3d}% {word}", end="", flush=True)

    return progress


def _command(node: Node, args: argparse.Namespace) -> int:
    cmd = args.command
    if cmd == "put":
        node.put(args.remote, Path(args.local).read_bytes())
        print(f"{args.local} -> {args.node}:{args.remote}")
    elif cmd == "get":
        data = node.get(args.remote)
        if args.local == "-":
            sys.stdout.buffer.write(data)
        else:
            Path(args.local).write_bytes(data)
    elif cmd == "ls":
        for name, is_dir, size in sorted(node.ls(args.path)):
            print(f"{'d' if is_dir else '-'} {size:>8} {name}{'/' if is_dir else ''}")
    elif cmd in ("rm", "reboot"):
        print(node.call(cmd, getattr(args, "path", "")).decode() or "ok")
    elif cmd in ("eval", "exec"):
        out = node.call(cmd, args.expression if cmd == "eval" else args.code).decode()
        if out:
            print(out)
    elif cmd == "logs":
        return _logs(node, args.follow)
    elif cmd == "update":
        firmware = build_firmware(args.source, args.mpy_cross)
        print(f"installing firmware {firmware.version} ({firmware.build}) on {args.node}")
        info = node.update(firmware, _progress("staged"), confirm_timeout=args.confirm_timeout)
        print(f"\nfirmware {info['version']} ({info['build']}) confirmed by {args.node}")
    return 0


def _logs(node: Node, follow: bool) -> int:
    colour = sys.stdout.isatty()
    stop = threading.Event()

    def show(level: str, line: str) -> None:
        start = COLOURS.get(level, "") if colour else ""
        print(f"{start}[{level}] {line}{RESET if start else ''}", flush=True)

    node.logs(show)
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait(None if follow else node.timeout)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the smartserver-node command."""
    args = parser().parse_args(argv)
    try:
        return run(args)
    except NodeError as err:
        print(f"smartserver-node: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"smartserver-node: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
