"""Test certificates made with openssl: a CA, a server certificate, a stranger CA."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Certs:
    """Paths of the test PKI."""

    ca: Path
    server_cert: Path
    server_key: Path
    wrong_ca: Path

    @property
    def ca_pem(self) -> str:
        """The CA certificate as PEM text."""
        return self.ca.read_text()


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _self_signed(directory: Path, name: str, subject: str, days: int) -> None:
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", str(days),
        "-subj", subject, "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip


def make_certs(directory: Path, days: int = 3) -> Certs:
    """Create a CA, a server certificate for 127.0.0.1/localhost, and a stranger CA."""
    directory.mkdir(parents=True, exist_ok=True)
    _self_signed(directory, "ca", "/CN=smartserver test CA", days)
    _self_signed(directory, "wrong-ca", "/CN=somebody else's CA", days)
    (directory / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
    )
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost",
        cwd=directory,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.crt", "-days", str(days), "-extfile", "server.ext",
        cwd=directory,
    )  # fmt: skip
    for path in directory.iterdir():
        path.chmod(0o644)
    return certs_at(directory)


def certs_valid(directory: Path, seconds: int) -> bool:
    """Whether make_certs' CA and server certificate in `directory` are valid for `seconds` more."""
    return all(
        (directory / name).exists()
        and subprocess.run(
            ["openssl", "x509", "-checkend", str(seconds), "-noout", "-in", str(directory / name)],
            capture_output=True,
            check=False,
        ).returncode
        == 0
        for name in ("ca.crt", "server.crt")
    )


def certs_at(directory: Path) -> Certs:
    """The certificates make_certs wrote into `directory`."""
    return Certs(
        ca=directory / "ca.crt",
        server_cert=directory / "server.crt",
        server_key=directory / "server.key",
        wrong_ca=directory / "wrong-ca.crt",
    )
