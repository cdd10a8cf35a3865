"""Stage wall time that survives a kill.

A running stage writes its elapsed seconds into the run's record every ``HEARTBEAT_S``
(``running_seconds``), so when the process dies (kill -9, a lost machine) the next attempt
adds the dead attempt's time, to within one heartbeat, instead of losing it. A stage's
``seconds`` is then the wall time of all the work it took, over every attempt.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from nas.env import cpu_model

HEARTBEAT_S = 30.0


@contextlib.contextmanager
def timed_attempt(
    entry: dict[str, Any], save: Callable[[], None], every: float = HEARTBEAT_S
) -> Iterator[None]:
    """Time one attempt at a stage into its record ``entry``, saving through ``save``.

    On entry, a killed attempt's last heartbeat is folded into ``seconds``
    (``interrupted_attempts`` counts them) and the CPU this attempt runs on is added to
    ``machines``. On exit, ``running_seconds`` holds this attempt's time: the caller adds
    it to ``seconds`` when the stage did its work (an exception leaves it for the next
    attempt to fold in, as a kill does).
    """
    lock = threading.Lock()
    if "running_seconds" in entry:
        entry["seconds"] = entry.get("seconds", 0.0) + entry.pop("running_seconds")
        entry["interrupted_attempts"] = entry.get("interrupted_attempts", 0) + 1
    entry.setdefault("seconds", 0.0)
    machines = entry.setdefault("machines", [])
    if cpu_model() not in machines:
        machines.append(cpu_model())
    started = time.monotonic()
    entry["running_seconds"] = 0.0
    save()
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every):
            with lock:
                entry["running_seconds"] = time.monotonic() - started
                with contextlib.suppress(RuntimeError):  # the record changed while written
                    save()

    thread = threading.Thread(target=beat, name="pipeline-stage-clock", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        entry["running_seconds"] = time.monotonic() - started
        save()
