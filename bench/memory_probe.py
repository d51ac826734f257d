"""Where a benchmark desk's memory goes (`bench/route.py --memory`), bench only.

Every `every` seconds the desk's process appends one JSON line: the kernel's view
(/proc/self/smaps_rollup: anonymous, file-backed, shared), glibc's (mallinfo2: bytes in use
and bytes free inside malloc's arenas, the arenas' count, mmapped blocks), SQLite's own
allocator (sqlite3_memory_used: page caches, statements), the Python objects the collector
tracks by type, the asyncio tasks, the threads and, with `ROUTE_BENCH_TRACEMALLOC=1`, the
Python allocations by line against the first line's snapshot. Native growth with a flat
Python heap is SQLite or malloc; `fordblks` growing beside a flat `uordblks` is
fragmentation (free memory malloc cannot give back).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
import json
import os
import threading
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

TRACE_ENV = "ROUTE_BENCH_TRACEMALLOC"


MALLINFO = (
    "arena",
    "ordblks",
    "smblks",
    "hblks",
    "hblkhd",
    "usmblks",
    "fsmblks",
    "uordblks",
    "fordblks",
    "keepcost",
)


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in MALLINFO]


def _libc() -> Any:
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = _Mallinfo2
    return libc


def _sqlite() -> Any:
    import _sqlite3

    lib = ctypes.CDLL(_sqlite3.__file__)  # the library it links (the process's own copy)
    lib.sqlite3_memory_used.restype = ctypes.c_int64
    lib.sqlite3_memory_highwater.restype = ctypes.c_int64
    lib.sqlite3_memory_highwater.argtypes = [ctypes.c_int]
    return lib


def smaps() -> dict[str, int]:
    """/proc/self/smaps_rollup in kB."""
    found = {}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]:
        name, value, *_ = line.split()
        found[name.rstrip(":")] = int(value)
    return found


def arenas() -> int:
    """glibc's secondary arenas: each a heap at a 64 MB boundary (its used part, then the
    rest of the 64 MB reserved without access, two mappings)."""
    count = 0
    for line in Path("/proc/self/maps").read_text().splitlines():
        parts = line.split()
        start, end = (int(x, 16) for x in parts[0].split("-"))
        if len(parts) == 5 and start % (64 << 20) == 0 and end - start <= 64 << 20:
            count += parts[1].startswith("rw")
    return count


def pymalloc() -> dict[str, int]:
    """From sys._debugmallocstats (which writes to the C stderr): pymalloc's arenas and
    the bytes in its used blocks."""
    import sys
    import tempfile

    with tempfile.TemporaryFile("w+") as capture:
        saved = os.dup(2)
        try:
            os.dup2(capture.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        text = capture.read()
    found = {}
    for line in text.splitlines():
        if line.startswith("# arenas allocated current"):
            found["arenas"] = int(line.split("=")[1].replace(",", ""))
        elif line.startswith("# bytes in allocated blocks"):
            found["used"] = int(line.split("=")[1].replace(",", ""))
        elif line.startswith("# bytes in available blocks"):
            found["free"] = int(line.split("=")[1].replace(",", ""))
    return found


class MemoryProbe:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.libc = _libc()
        self.sqlite = _sqlite()
        # ROUTE_BENCH_TRACEMALLOC=N: growth against the Nth line (1 by default: after the
        # first interval, whose warming up would hide a steady growth)
        self.trace = bool(os.environ.get(TRACE_ENV))
        self.base = int(os.environ.get(TRACE_ENV) or 1)
        self.lines = 0
        self.first: tracemalloc.Snapshot | None = None
        if self.trace:
            tracemalloc.start(8)

    def line(self) -> dict[str, Any]:
        info = self.libc.mallinfo2()
        types = Counter(type(o).__name__ for o in gc.get_objects())
        found: dict[str, Any] = {
            "at": time.time(),
            "smaps": smaps(),
            "malloc": {name: getattr(info, name) for name in MALLINFO},
            "arenas": arenas(),
            "sqlite": self.sqlite.sqlite3_memory_used(),
            "pymalloc": pymalloc(),
            "objects": sum(types.values()),
            "types": dict(types.most_common(60)),
            "tasks": len(asyncio.all_tasks()),
            "threads": [t.name for t in threading.enumerate()],
        }
        if self.trace:
            snapshot = tracemalloc.take_snapshot().filter_traces(
                [tracemalloc.Filter(False, tracemalloc.__file__)]
            )
            found["traced"] = tracemalloc.get_traced_memory()[0]
            if self.lines == self.base:
                self.first = snapshot
            elif self.first is not None:
                found["growth"] = [
                    {
                        "size": stat.size_diff,
                        "count": stat.count_diff,
                        "where": stat.traceback.format()[-8:],
                    }
                    for stat in snapshot.compare_to(self.first, "traceback")[:25]
                ]
                found["traced_base"] = self.first_traced
            if self.lines == self.base:
                self.first_traced = found["traced"]
        self.lines += 1
        return found

    first_traced = 0

    async def run(self, stop: asyncio.Event, every: float) -> None:
        with self.path.open("a") as out:
            while True:
                out.write(json.dumps(self.line()) + "\n")
                out.flush()
                if stop.is_set():
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), every)


def report(path: Path) -> str:
    """The first line against the last (and against the second, with tracemalloc, whose
    first line is its baseline), one figure a line."""
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    first, last = lines[0], lines[-1]
    mb = 1 << 20
    out = [f"  memory, {len(lines)} lines over {last['at'] - first['at']:.0f} s (first -> last):"]
    for name in ("Rss", "Anonymous", "Private_Dirty", "Shared_Clean", "Shared_Dirty"):
        a, b = first["smaps"].get(name, 0), last["smaps"].get(name, 0)
        out.append(f"    smaps {name}: {a / 1024:.1f} -> {b / 1024:.1f} MB")
    for name in ("arena", "uordblks", "fordblks", "hblkhd"):
        a, b = first["malloc"][name], last["malloc"][name]
        out.append(f"    malloc {name}: {a / mb:.1f} -> {b / mb:.1f} MB")
    out.append(f"    glibc arenas (64 MB heaps): {first['arenas']} -> {last['arenas']}")
    a, b = first["sqlite"] / mb, last["sqlite"] / mb
    out.append(f"    sqlite3_memory_used: {a:.1f} -> {b:.1f} MB")
    a, b = first["pymalloc"], last["pymalloc"]
    out.append(
        f"    pymalloc arenas (1 MB): {a.get('arenas')} -> {b.get('arenas')}; in blocks "
        f"{a.get('used', 0) / mb:.1f} -> {b.get('used', 0) / mb:.1f} MB, free blocks "
        f"{a.get('free', 0) / mb:.1f} -> {b.get('free', 0) / mb:.1f} MB"
    )
    out.append(f"    gc objects: {first['objects']} -> {last['objects']}")
    out.append(f"    tasks: {first['tasks']} -> {last['tasks']}; threads: {len(last['threads'])}")
    grown = sorted(
        ((last["types"].get(t, 0) - first["types"].get(t, 0), t) for t in last["types"]),
        reverse=True,
    )[:12]
    out.append("    types grown: " + ", ".join(f"{t} +{n}" for n, t in grown if n > 0))
    if "growth" in last:
        out.append(
            f"    traced: {lines[0]['traced'] / mb:.1f}, at the baseline "
            f"{last['traced_base'] / mb:.1f} -> {last['traced'] / mb:.1f} MB (growth since:)"
        )
        for stat in last["growth"][:12]:
            out.append(f"    {stat['size'] / 1024:+.0f} kB in {stat['count']:+d} blocks:")
            out += [f"        {where}" for where in stat["where"]]
    return "\n".join(out)
