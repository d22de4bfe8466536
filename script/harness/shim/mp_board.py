# Boots the "flash" (the current directory) like an ESP32: boot.py, then main.py,
# with the flash first on the module path and these shims after it (SHIM_MPY: shims
# compiled to .mpy, ahead of their sources).
import os
import sys

shim = __file__.rsplit("/", 1)[0]
sys.path[:] = ["", ".frozen"] + ([os.getenv("SHIM_MPY")] if os.getenv("SHIM_MPY") else []) + [shim]
for name in ("boot.py", "main.py"):
    with open(name) as f:
        code = f.read()
    exec(code, {"__name__": "__main__", "__file__": name})
    code = None
