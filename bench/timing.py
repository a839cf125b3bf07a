"""Shared by the benchmark scripts: one whole-process run measured by /usr/bin/time -v, or
by the clock and the children's CPU time."""

from __future__ import annotations

import os
import re
import resource
import subprocess
import time


def measure(cmd: list[str], env: dict[str, str]) -> tuple[float, int]:
    """(wall seconds, peak RSS bytes) of one run, started after dirty pages are written back
    so that no command pays for another's writes."""
    os.sync()
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(proc.stderr[-2000:])
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", proc.stderr)
    h, m, s = (float(x) if x else 0.0 for x in wall.groups())
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)[1])
    return h * 3600 + m * 60 + s, rss * 1024


def run_timed(cmd: list[str] | str, env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system of all its threads) of one run, started after
    dirty pages are written back; ``cmd`` as a list, or a string for the shell."""
    os.sync()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(
        cmd,
        shell=isinstance(cmd, str),
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu
