# MicroPython: connect to mosquitto over verified TLS, publish one QoS 0 message.
# usage: micropython mp_tls_publish.py PORT USER PASSWORD CA_PATH TEXT
import socket
import sys

import tls


def field(data):
    return bytes([len(data) >> 8, len(data) & 0xFF]) + data


def packet(kind, body):
    n, size = len(body), b""
    while True:
        byte, n = n & 0x7F, n >> 7
        size += bytes([byte | (0x80 if n else 0)])
        if not n:
            return bytes([kind]) + size + body


port, user, password, ca_path, text = sys.argv[1:6]
ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
ctx.verify_mode = tls.CERT_REQUIRED
with open(ca_path) as f:
    ctx.load_verify_locations(f.read())
sock = socket.socket()
sock.connect(socket.getaddrinfo("127.0.0.1", int(port))[0][-1])
conn = ctx.wrap_socket(sock, server_hostname="localhost")
connect = b"\x00\x04MQTT\x04\xc2\x00\x1e" + field(b"mp-harness") + field(user.encode())
conn.write(packet(0x10, connect + field(password.encode())))
ack = conn.read(4)
if ack != b"\x20\x02\x00\x00":
    raise OSError("CONNACK refused: %r" % ack)
conn.write(packet(0x30, field(b"harness/mp") + text.encode()))
conn.write(b"\xe0\x00")
conn.close()
print("published")
