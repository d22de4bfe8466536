# The wall clock. An ESP32's starts at 2000-01-01 after power-up and mbedTLS checks the
# broker certificate's dates against it, so the node sets it before any TLS: by NTP as
# soon as WiFi is up, else forward to the last time it knew (kept on flash), which is
# after the certificate's start. Certificates are always verified; signed commands
# wait for NTP itself (sign.py).
import time

import machine
import offload
import sign

LAST = "clock_last"
NTP_TIMEOUT_MS = 3000


def restore():
    """At boot: move a clock that is behind the last time known forward to it."""
    last = sign.read_int(LAST)
    if sign.unix_time() >= last:
        return 0
    tm = time.gmtime(last - sign.EPOCH)
    machine.RTC().datetime((tm[0], tm[1], tm[2], tm[6] + 1, tm[3], tm[4], tm[5], 0))
    return last


def save():
    """Keep the time for the next power-up (after each NTP sync: twice a day at most)."""
    try:
        with open(LAST, "w") as f:
            f.write(str(int(sign.unix_time())))
    except OSError:
        pass


async def sync(host):
    """Set the clock by NTP (on a thread: the query blocks); OSError if it fails."""
    import ntptime

    ntptime.host = host
    ntptime.timeout = NTP_TIMEOUT_MS // 1000
    await offload.call("ntp", ntptime.settime, (), NTP_TIMEOUT_MS + 1000)
    sign.clock_synced()
    save()
