# Signed power commands on <base>/node/<node>/power/set: PRESS and HOLD go to the
# relay, WOL to wol.py. Runs on a node with a relay or a `wol` section; a WOL-only node
# (no relay wired) refuses PRESS and HOLD.
import log
import sign
import topics

PRESS = "PRESS"
HOLD = "HOLD"
WOL = "WOL"  # Wake-on-LAN: the magic packet instead of a pulse (wol.py)


class Commands:
    def __init__(self, mqtt, config, relay):
        section = config.get("relay") or config.get("wol") or {}
        self._verifier = sign.Verifier(config.get("key"), config["node_id"], section.get("max_skew_s", 30))
        self._relay = relay
        self.topic = topics.node_topic(config, "power/set")
        mqtt.subscribe(self.topic, self._on_command, qos=1)

    def _on_command(self, topic, payload, retained):
        try:
            cmd, arg = self._verifier.check(payload, retained)
        except sign.Refused as err:
            log.warning("power command refused: %s" % err)
            return
        if cmd == WOL:
            self._wake(arg)
        elif cmd not in (PRESS, HOLD):
            log.warning("power command refused: unknown command %r" % cmd)
        elif self._relay is None:
            log.warning("power command refused: %s needs a relay, and this node has none (WOL only)" % cmd)
        else:
            self._relay.command(cmd)

    def _wake(self, arg):
        import wol  # loaded for the first WOL only: most nodes press a button

        try:
            log.info("WOL: magic packet for %s" % wol.send(arg))
        except ValueError as err:
            log.warning("power command refused: WOL %s" % err)
        except OSError as err:
            log.error("WOL: magic packet not sent: %s" % err)


def start(mqtt, config, relay):
    return Commands(mqtt, config, relay)
