# `ntptime` as the ESP32 build's frozen module behaves: one blocking SNTP query to
# (host, 123) that waits up to `timeout` seconds, then machine.RTC().datetime(...).
# The tests point `host` at a responder on a loopback address (script/harness/ntp.py).
# The wait polls a non-blocking socket: on the unix port each garbage collection
# interrupts a blocked recv() in a thread, which restarts its timeout (collections
# more often than the timeout kept it waiting for ever); an ESP32's does not.
import errno
import socket
import struct
from time import gmtime, sleep_ms, ticks_diff, ticks_ms

import machine

host = "pool.ntp.org"
timeout = 1
_NTP_TO_1970 = 2208988800


def time():
    query = bytearray(48)
    query[0] = 0x23  # version 4, client
    addr = socket.getaddrinfo(host, 123)[0][-1]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.setblocking(False)
        s.sendto(query, addr)
        start = ticks_ms()
        while True:
            try:
                answer = s.recv(48)
                break
            except OSError as err:
                if err.errno != errno.EAGAIN:
                    raise  # a real socket error, at once as on a board
                if ticks_diff(ticks_ms(), start) >= timeout * 1000:
                    raise OSError(errno.ETIMEDOUT)
                sleep_ms(20)
    finally:
        s.close()
    seconds = struct.unpack("!I", answer[40:44])[0]
    return seconds - _NTP_TO_1970 - (946684800 if gmtime(0)[0] == 2000 else 0)


def settime():
    machine.record("ntp", "settime", host)
    tm = gmtime(time())
    machine.RTC().datetime((tm[0], tm[1], tm[2], tm[6] + 1, tm[3], tm[4], tm[5], 0))
