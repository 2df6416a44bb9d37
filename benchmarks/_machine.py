"""What every benchmark prints about the machine it ran on (imported by the benchmark scripts)."""

from __future__ import annotations

import os
import platform


def load_text() -> str:
    """The 1/5/15-minute load averages, or n/a."""
    return " / ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def machine_line(extra: str = "") -> str:
    """'- machine: Linux x86_64, <cpu model>; cpu_count 2 (usable 2)<extra>; load average …'."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next(line.split(":", 1)[1].strip() for line in cpuinfo
                         if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"- machine: {platform.system()} {platform.machine()}, {model}; cpu_count "
            f"{os.cpu_count()} (usable {usable}){extra}; load average at start (1/5/15 min) "
            f"{load_text()}")
