"""How many of an emitter's lanes may have a call in flight at once, adapted to where a call's time goes.

Why: lanes pay off when a call's time is spent waiting on the network (a backend 20 ms
away: 8 calls in flight deliver ~7x one). When it is spent on this process's CPU (a
backend on loopback, where a POST is ~0.6 ms of client CPU), calls in flight only
contend for the GIL: 8 busy lanes on loopback delivered 0.6-0.8x what one call at a
time does. So the limit is what keeps one core busy and no more: the fastest call's
wall time (``best``, the network's share plus one call's CPU) over a call's own CPU
time (``cpu``, measured on its thread), at least 1 and at most the number of lanes.

``best`` is the lowest wall time of the last two windows of samples, so that it follows
a backend that moved (a window ends after ``WINDOW_SAMPLES`` samples or ``WINDOW_S``
seconds), and is not raised by the contention of a high limit: the fastest calls of a
window are the ones that met none.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

#: Samples, or seconds, after which a window of wall times ends.
WINDOW_SAMPLES = 200
WINDOW_S = 5.0

#: Weight of a new sample in the moving mean of a call's CPU time.
CPU_WEIGHT = 0.1

#: A call still running after this long is waiting on the backend, not on this process's
#: CPU: it stops counting against the limit, so that one slow request on a backend whose
#: calls are otherwise fast does not hold every lane up for as long as it takes.
NETWORK_BOUND_S = 0.1

#: How long one wait for a free slot lasts before ``while_waiting`` runs again. Not
#: shorter: every waiting lane that wakes takes the GIL from the lane sending, and with
#: 7 lanes waking every 50 ms that cost the sending lane ~25% of its events/s on loopback.
#: A closing emitter does not wait for it (``interrupt``).
WAIT_SLICE_S = 0.25


class _Waiter:
    __slots__ = ("given", "woken")

    def __init__(self) -> None:
        self.woken = threading.Event()  # given a slot, or interrupted
        self.given = False


class CallLimit:
    """A count of calls in flight, at most ``limit``; ``limit`` starts at 1 and follows samples.

    Slots go to waiting lanes first come, first served: a lane that ends a call and
    wants another queues behind those already waiting, so one busy lane cannot keep the
    slot while the others' queues grow.
    """

    def __init__(self, most: int) -> None:
        self._most = most
        self._limit = 1
        self._in_flight = 0
        self._lock = threading.Lock()
        self._waiting: deque[_Waiter] = deque()  # oldest first
        self._cpu_s = 0.0
        self._best_s = math.inf  # best of the previous window
        self._window_best_s = math.inf
        self._window_samples = 0
        self._window_end = 0.0

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def waiting(self) -> int:
        """Lanes waiting for their turn to call."""
        return len(self._waiting)

    def acquire(self, stop: Callable[[], bool], while_waiting: Callable[[], None]) -> bool:
        """Take a slot, waiting while ``limit`` calls are in flight; False if ``stop()`` is
        or became true (then no slot is held)."""
        with self._lock:
            if stop():
                return False
            if self._in_flight < self._limit and not self._waiting:
                self._in_flight += 1
                return True
            waiter = _Waiter()
            self._waiting.append(waiter)
        try:
            while True:
                waiter.woken.wait(WAIT_SLICE_S)
                with self._lock:
                    # stop() first: a slot given to a lane told to stop goes to the next one.
                    if stop():
                        self._leave(waiter)
                        return False
                    if waiter.given:
                        return True
                    waiter.woken.clear()
                while_waiting()  # outside the lock: it spills overflow, which may take a while
        except BaseException:
            with self._lock:
                self._leave(waiter)  # never a slot held by no one, nor a waiter no one is
            raise

    def _leave(self, waiter: _Waiter) -> None:
        """Under the lock: ``waiter`` stops waiting; a slot it was given goes on."""
        if waiter.given:
            self._free()
        else:
            self._waiting.remove(waiter)

    def interrupt(self) -> None:
        """Have every waiting lane look at its ``stop()`` now (a lane is closing)."""
        with self._lock:
            for waiter in self._waiting:
                waiter.woken.set()

    def release(self) -> None:
        with self._lock:
            self._free()

    def _free(self) -> None:
        """Under the lock: a slot is free again; it goes to the longest-waiting lane."""
        self._in_flight -= 1
        self._give()

    def _give(self) -> None:
        """Under the lock: free slots to the longest-waiting lanes."""
        while self._waiting and self._in_flight < self._limit:
            self._in_flight += 1
            waiter = self._waiting.popleft()
            waiter.given = True
            waiter.woken.set()

    def sample(self, wall_s: float, cpu_s: float) -> None:
        """One call that succeeded: its wall time, and the CPU time its thread spent on it."""
        now = time.monotonic()
        with self._lock:
            self._cpu_s = cpu_s if not self._cpu_s else self._cpu_s + CPU_WEIGHT * (cpu_s - self._cpu_s)
            if self._window_samples and (self._window_samples >= WINDOW_SAMPLES or now >= self._window_end):
                self._best_s, self._window_best_s, self._window_samples = self._window_best_s, math.inf, 0
            if self._window_samples == 0:
                self._window_end = now + WINDOW_S
            self._window_samples += 1
            self._window_best_s = min(self._window_best_s, wall_s)
            best_s = min(self._best_s, self._window_best_s)
            wanted = int(best_s / self._cpu_s) if self._cpu_s > 0 else self._most
            self._limit = max(1, min(self._most, wanted))
            self._give()
