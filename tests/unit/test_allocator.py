"""The worker's glibc tuning (``runner.tune_allocator``), observed through ``mallinfo2``.

Each case runs in a fresh interpreter, since the tuning is per process. glibc raises its
mmap threshold to the size of the largest mmapped block freed: after a 4 MiB block came and
went, a 1 MiB block comes from the heap, and stays there once freed. Tuned, it gets pages of
its own.
"""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import ctypes, json, sys
from stream_app.runner import tune_allocator

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = MallInfo2
tuned = tune_allocator() if sys.argv[1] == "tuned" else None
libc.free(libc.malloc(4 << 20))  # raises glibc's dynamic threshold to 4 MiB
before = libc.mallinfo2().hblkhd
block = libc.malloc(1 << 20)
mapped = libc.mallinfo2().hblkhd - before
libc.free(block)
print(json.dumps({"tuned": tuned, "mapped": mapped}))
"""


def probe(mode: str) -> dict[str, int | bool | None]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], check=True, capture_output=True, text=True
    ).stdout
    result: dict[str, int | bool | None] = json.loads(out)
    return result


def test_a_large_block_gets_its_own_pages_once_tuned() -> None:
    untuned, tuned = probe("untuned"), probe("tuned")
    assert untuned["mapped"] == 0, "glibc's dynamic threshold no longer moves: test is moot"
    assert tuned["tuned"] is True
    assert (tuned["mapped"] or 0) >= 1 << 20
