# Boots the "flash" (the current directory) like an ESP32: boot.py, then main.py,
# with the flash first on the module path and these shims after it (SHIM_MPY: shims
# compiled to .mpy, ahead of their sources). SHIM_ROMFS names a ROMFS image: it is
# copied to memory outside the heap (a board maps the partition from flash) and
# mounted at /rom, whose .mpy files then run in place, as frozen modules do.
import os
import sys


def _mount_romfs(path):
    import ffi
    import uctypes
    import vfs

    with open(path, "rb") as f:
        size = f.seek(0, 2)
        f.seek(0)
        address = ffi.open("libc.so.6").func("p", "malloc", "I")(size)
        rom = uctypes.bytearray_at(address, size)
        chunk = bytearray(256)
        done = 0
        while done < size:
            n = f.readinto(chunk)
            rom[done : done + n] = memoryview(chunk)[:n]
            done += n
    vfs.mount(vfs.VfsRom(rom), "/rom")


shim = __file__.rsplit("/", 1)[0]
rom = []
if os.getenv("SHIM_ROMFS"):
    _mount_romfs(os.getenv("SHIM_ROMFS"))
    rom = ["/rom"]
_mount_romfs = None
sys.path[:] = [""] + rom + [".frozen"] + ([os.getenv("SHIM_MPY")] if os.getenv("SHIM_MPY") else []) + [shim]
rom = None
# Compiled first and the source dropped: a board reads main.py through a small lexer
# buffer and keeps only the compiled code while it runs, not the text.
for name in ("boot.py", "main.py"):
    with open(name) as f:
        code = compile(f.read(), name, "exec")
    exec(code, {"__name__": "__main__", "__file__": name})
    code = None
