"""smartserver-node, the command-line tool, against the unix-port node over TLS."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from script.harness import esp_image
from script.harness.board import KEY, NODE, Board
from script.harness.mosquitto import Broker
from script.harness.procs import stop, wait_for

from .test_mgmt import HEAP

CLI = Path(sys.executable).with_name("smartserver-node")


def cli_args(broker: Broker, tmp_path: Path, *args: str, key: str = KEY, node: str = NODE) -> list[str]:
    (tmp_path / "key").write_text(key)
    (tmp_path / "password").write_text(broker.password)
    return [
        str(CLI),
        "--host=127.0.0.1",
        f"--port={broker.tls_port}",
        f"--ca={broker.certs.ca}",
        f"--user={broker.username}",
        f"--password-file={tmp_path / 'password'}",
        f"--node={node}",
        f"--key-file={tmp_path / 'key'}",
        "--timeout=5",
        *args,
    ]


def cli(broker: Broker, tmp_path: Path, *args: str, **kw: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli_args(broker, tmp_path, *args, **kw), capture_output=True, text=True, check=False
    )


def test_put_get_ls_eval_and_errors(
    start_board: Callable[..., Board], mosquitto: Broker, tmp_path: Path
) -> None:
    board = start_board(heapsize=HEAP, mgmt={"eval": True})
    local = tmp_path / "notes.txt"
    local.write_text("line\n" * 600)  # three chunks
    result = cli(mosquitto, tmp_path, "put", str(local), "notes.txt")
    assert result.returncode == 0, result.stderr
    assert (board.flash / "notes.txt").read_text() == local.read_text()
    result = cli(mosquitto, tmp_path, "get", "notes.txt", str(tmp_path / "back.txt"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "back.txt").read_text() == local.read_text()
    result = cli(mosquitto, tmp_path, "ls")
    assert "-     3000 notes.txt" in result.stdout
    assert cli(mosquitto, tmp_path, "eval", "2 ** 10").stdout == "1024\n"

    wrong = cli(mosquitto, tmp_path, "ls", key="another key")
    assert wrong.returncode == 1
    assert "bad signature (wrong key for this node?)" in wrong.stderr
    silent = cli(mosquitto, tmp_path, "ls", node="node9")
    assert silent.returncode == 1
    assert "node node9 did not answer within 5 s" in silent.stderr
    missing = cli(mosquitto, tmp_path, "get", "nothing.txt", "-")
    assert missing.returncode == 1
    assert "get failed: OSError(2" in missing.stderr


def test_logs_follow(start_board: Callable[..., Board], mosquitto: Broker, tmp_path: Path) -> None:
    start_board(heapsize=HEAP)
    out = tmp_path / "logs.txt"
    with out.open("w") as f:
        proc = subprocess.Popen(cli_args(mosquitto, tmp_path, "logs", "--follow"), stdout=f, stderr=f)
    try:
        # The node logs every management command it runs.
        def logged() -> bool:
            cli(mosquitto, tmp_path, "ls")
            return "[info] management: ls" in out.read_text()

        wait_for(logged, 30, "the management log line")
    finally:
        stop(proc)


def test_image_installs_an_app_image_and_refuses_other_files(
    start_board: Callable[..., Board], mosquitto: Broker, tmp_path: Path
) -> None:
    board = start_board(heapsize=HEAP, mgmt={"confirm_s": 2, "trial_s": 60})
    # a full flash image starts with the bootloader: refused before connecting
    full = tmp_path / "firmware.bin"
    image = esp_image.build("v1.26.0", 100 * 1024)
    full.write_bytes(image[:32] + bytes(4) + image[36:])
    refused = cli(mosquitto, tmp_path, "image", str(full))
    assert refused.returncode == 2
    assert "is not a MicroPython ESP32 app image: take the OTA build's .app-bin" in refused.stderr
    # another project's image (ESPHome, ...) would never come back to MQTT: refused too
    other = tmp_path / "esphome.bin"
    other.write_bytes(esp_image.build("2025.4.0", 100 * 1024, project="esphome"))
    assert cli(mosquitto, tmp_path, "image", str(other)).returncode == 2
    app = tmp_path / "ESP32_GENERIC-OTA-v1.26.0.app-bin"
    app.write_bytes(image)
    proc = subprocess.Popen(
        cli_args(mosquitto, tmp_path, "image", str(app), "--confirm-timeout=60"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        board.wait(lambda: proc.poll() is not None, timeout=90, what="smartserver-node image")
        out, err = proc.communicate()
    finally:
        stop(proc)
    assert proc.returncode == 0, err
    assert out.startswith(f"installing MicroPython image 1.26.0 ({len(image)} bytes) on {NODE}")
    assert " 64% written" in out
    assert out.endswith(f"MicroPython image 1.26.0 confirmed by {NODE}\n")
    assert board.booted == ["ota_0", "ota_1"]
