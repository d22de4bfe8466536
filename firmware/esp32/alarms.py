# Alarm inputs: the dry contacts a homelab has (a UPS "on battery" relay, a leak
# sensor, a case switch). An input that becomes active logs its message at its level,
# and an info line when it clears. Home Assistant turns the lines into entities and
# events, so a critical alarm can run an automation.
import log
from inputs import DebouncedInput
from settings import input_problem

MAX_ALARMS = 8


def check(spec):
    if not isinstance(spec, dict):
        return "not an object"
    problem = input_problem(spec)
    if problem:
        return problem
    if spec.get("level", "critical") not in log.LEVELS:
        return "level must be one of %s" % ", ".join(log.LEVELS)
    message = spec.get("message", "")
    if not isinstance(message, str):
        return "message is not text"
    return None


class Alarm:
    def __init__(self, name, spec):
        self.message = spec.get("message") or name
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
    # an object of named inputs: one component file (config/alarms.json) in HA's storage
    specs = config["alarms"]
    if not isinstance(specs, dict):
        log.error("alarms must be an object of named inputs: ignored")
        return []
    names = sorted(specs)
    if len(names) > MAX_ALARMS:
        log.error("%d alarms configured, only %d run" % (len(names), MAX_ALARMS))
    alarms = []
    for name in names[:MAX_ALARMS]:
        problem = check(specs[name])
        if problem:
            log.error("alarm %s ignored: %s" % (name, problem))
        else:
            alarms.append(Alarm(name, specs[name]))
    return alarms
