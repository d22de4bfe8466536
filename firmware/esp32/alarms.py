# Alarm inputs: the dry contacts a homelab has (a UPS "on battery" relay, a leak
# sensor, a case switch). An input that becomes active logs its message at its level,
# and an info line when it clears. Home Assistant turns the lines into entities and
# events, so a critical alarm can run an automation.
import log
from inputs import DebouncedInput

MAX_ALARMS = 8


def check(spec):
    if not isinstance(spec, dict):
        return "not an object"
    if not isinstance(spec.get("pin"), int):
        return "no pin number"
    if spec.get("level", "critical") not in log.LEVELS:
        return "level must be one of %s" % ", ".join(log.LEVELS)
    message = spec.get("message")
    if not isinstance(message, str) or not message:
        return "no message"
    return None


class Alarm:
    def __init__(self, spec):
        self.message = spec["message"]
        self.level = spec.get("level", "critical")
        self.active = False
        self._input = DebouncedInput(spec, self._on_change)

    def _on_change(self, active):
        # an input already active at boot is reported; one idle at boot is not
        if active:
            log.log(self.level, self.message)
        elif self.active:
            log.info("%s: cleared" % self.message)
        self.active = active


def start(mqtt, config):
    specs = config["alarms"]
    if not isinstance(specs, list):
        log.error("alarms must be a list of inputs: ignored")
        return []
    if len(specs) > MAX_ALARMS:
        log.error("%d alarms configured, only the first %d run" % (len(specs), MAX_ALARMS))
    alarms = []
    for i, spec in enumerate(specs[:MAX_ALARMS]):
        problem = check(spec)
        if problem:
            log.error("alarm %d ignored: %s" % (i, problem))
        else:
            alarms.append(Alarm(spec))
    return alarms
