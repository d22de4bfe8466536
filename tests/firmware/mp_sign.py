# MicroPython: print the firmware's signature for each [key, target, cmd, ts, nonce, arg].
# usage: micropython mp_sign.py FIRMWARE_DIR CASES_JSON_FILE
import json
import sys

sys.path.insert(0, sys.argv[1])
import sign  # noqa: E402

with open(sys.argv[2]) as f:
    cases = json.load(f)
for case in cases:
    print(sign.signature(*case))
