# Boots the "flash" (the current directory) like an ESP32: boot.py, then main.py,
# with the flash first on the module path and these shims after it.
import os
import sys

shim = __file__.rsplit("/", 1)[0]
sys.path[:] = ["", ".frozen", shim]
if os.getenv("SHIM_SLOW_DNS"):
    sys.path.insert(2, shim + "/slow_dns")
for name in ("boot.py", "main.py"):
    with open(name) as f:
        code = f.read()
    exec(code, {"__name__": "__main__", "__file__": name})
    code = None
