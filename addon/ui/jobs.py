"""Background work: the engine runs in a worker thread while Blender's UI stays responsive.

A ``Job`` runs one function ``work(progress, cancel) -> result`` in a daemon thread. The thread never
touches Blender data; the main thread polls ``job.progress``/``job.message`` (a modal operator's
timer) and, once ``job.done``, applies ``job.result`` to the scene or reports ``job.error``.
Only one job runs at a time (``active()``), so the panel's Cancel button and Esc know which to stop.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, Literal

from ..blender.errors import JobBusyError

# What Operator.execute/invoke/modal return (a precise type for the bpy stubs' type check).
OperatorResult = set[Literal["RUNNING_MODAL", "CANCELLED", "FINISHED", "PASS_THROUGH", "INTERFACE"]]
ProgressFn = Callable[[float, str], None]
CancelFn = Callable[[], bool]

_ACTIVE: Job | None = None
_ACTIVE_LOCK = threading.Lock()




class Job:
    def __init__(self, name: str, work: Callable[[ProgressFn, CancelFn], Any]):
        self.name = name
        self._work = work
        self._cancel = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"dance-{name}", daemon=True)
        self.progress = 0.0
        self.message = "Starting"
        self.result: Any = None
        self.error: BaseException | None = None
        self.details = ""  # traceback of an unexpected error, for the console

    # --- called from the main thread ---------------------------------------------------------------
    def start(self) -> Job:
        global _ACTIVE
        with _ACTIVE_LOCK:
            if _ACTIVE is not None and not _ACTIVE.done:
                raise JobBusyError(f"'{_ACTIVE.name}' is still running: wait for it or cancel it")
            _ACTIVE = self
        self._thread.start()
        return self

    def cancel(self) -> None:
        self._cancel.set()
        self.message = "Cancelling"

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None, poll: Callable[[Job], None] | None = None) -> bool:
        """Block until done (or ``timeout``); ``poll(job)`` runs every 50 ms meanwhile. True when done."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._done.wait(0.05):
            if poll is not None:
                poll(self)
            if deadline is not None and time.monotonic() > deadline:
                return False
        return True

    def release(self) -> None:
        """Forget this job as the active one (call once its result was handled)."""
        global _ACTIVE
        with _ACTIVE_LOCK:
            if _ACTIVE is self:
                _ACTIVE = None

    # --- the worker thread -------------------------------------------------------------------------
    def _report(self, fraction: float, message: str) -> None:
        self.progress = min(max(float(fraction), 0.0), 1.0)
        self.message = message

    def _run(self) -> None:
        try:
            self.result = self._work(self._report, self._cancel.is_set)
            self.progress = 1.0
        except BaseException as exc:  # reported on the main thread
            self.error = exc
            self.details = traceback.format_exc()
        finally:
            self._done.set()


def active() -> Job | None:
    """The running (or finished but not yet handled) job, if any."""
    return _ACTIVE


def stop_active(timeout: float = 10.0) -> None:
    """Cancel the active job and wait (up to ``timeout``) for its thread to end: nothing of the add-on
    runs on after it is disabled. The engine and the installer poll the cancel flag often."""
    job = _ACTIVE
    if job is None:
        return
    job.cancel()
    job.wait(timeout)
    job.release()


def cancel_active() -> bool:
    """Ask the active job to stop; True when there was one to cancel."""
    job = _ACTIVE
    if job is None or job.done:
        return False
    job.cancel()
    return True
