# Wake-on-LAN: a signed WOL on power/set sends the magic packet (6 x 0xFF, then the
# server's MAC 16 times) over UDP to the broadcast address and port the arg names.
# The node must be on the server's network segment: routers do not pass broadcasts.
import socket

ADDRESS = "255.255.255.255"
PORT = 9
_HEX = "0123456789abcdefABCDEF"


def parse_mac(text):
    sep = text[2:3] if len(text) == 17 else ""
    digits = text.replace(sep, "") if sep in (":", "-") else text
    if len(digits) != 12 or (sep and text.count(sep) != 5) or any(c not in _HEX for c in digits):
        raise ValueError("malformed MAC %r" % text[:32])
    return bytes(int(digits[i : i + 2], 16) for i in range(0, 12, 2))


def _address(text):
    parts = text.split(".")
    if len(parts) != 4 or not all(p.isdigit() and len(p) <= 3 and int(p) <= 255 for p in parts):
        raise ValueError("malformed address %r" % text[:32])
    return text


def parse(arg):
    """Return (mac bytes, address, port) from "MAC[ ADDRESS[ PORT]]"; ValueError if malformed."""
    parts = arg.split(" ")
    if not 1 <= len(parts) <= 3:
        raise ValueError("WOL arg must be MAC[ ADDRESS[ PORT]]")
    mac = parse_mac(parts[0])
    address = _address(parts[1]) if len(parts) > 1 else ADDRESS
    port = parts[2] if len(parts) > 2 else str(PORT)
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError("malformed port %r" % port[:8])
    return mac, address, int(port)


def packet(mac):
    return b"\xff" * 6 + mac * 16


def send(arg):
    """Send the magic packet `arg` asks for; return what was sent, for the log."""
    mac, address, port = parse(arg)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.sendto(packet(mac), socket.getaddrinfo(address, port)[0][-1])
    finally:
        sock.close()
    return "%s to %s:%d" % (_mac_text(mac), address, port)


def _mac_text(mac):
    return ":".join("%02X" % b for b in mac)
