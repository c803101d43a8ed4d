"""Child processes (embedded broker, worker) that never outlive the command that started them.

:func:`spawn` starts a child

* in its **own process group**, inside the caller's session: a Ctrl-C in the terminal reaches
  the foreground group only, so the parent decides the order of the shutdown (worker first,
  then the broker, which writes its snapshot); and a supervisor or a test can still find every
  process of the session;
* with **SIGTERM as its parent-death signal** (Linux ``prctl(PR_SET_PDEATHSIG)``): if the parent
  dies without cleaning up (SIGKILL, a crash), the kernel sends the child SIGTERM, which both
  the broker (snapshot, exit) and the worker (graceful stop) handle.

:func:`stop_child` stops one: SIGTERM, wait, SIGKILL after a timeout, and always reap it;
:func:`wait_http` waits for a child's health endpoint.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import time
import urllib.request

PR_SET_PDEATHSIG = 1


def _preexec_fn():
    """The function run in the child between fork and exec: own process group, and (Linux)
    SIGTERM as parent-death signal. None on platforms without process groups."""
    if not hasattr(os, "setpgid"):
        return None
    prctl = None
    if sys.platform.startswith("linux"):
        try:
            prctl = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl
        except (OSError, AttributeError):
            prctl = None
    sigterm = int(signal.SIGTERM)

    def preexec() -> None:  # keep it minimal: async-signal-safe calls only
        os.setpgid(0, 0)
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, sigterm, 0, 0, 0)
    return preexec


_PREEXEC = _preexec_fn()


def spawn(cmd, **kwargs) -> subprocess.Popen:
    """``subprocess.Popen(cmd, **kwargs)`` in its own process group with a parent-death signal.

    The parent-death signal fires when the *thread* that spawned the child exits, so spawn
    long-lived children from the main thread (as the CLIs and fixtures do).
    """
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    if _PREEXEC is not None:
        kwargs.setdefault("preexec_fn", _PREEXEC)
    return subprocess.Popen(cmd, **kwargs)


def stop_child(proc: subprocess.Popen | None, timeout_s: float = 30.0, sig: int = signal.SIGTERM) -> int | None:
    """Send ``sig`` (SIGTERM), wait ``timeout_s``, then SIGKILL; always reap. Returns the exit code."""
    if proc is None:
        return None
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        except KeyboardInterrupt:  # a second Ctrl-C while waiting: do not leave it behind
            proc.kill()
            proc.wait()
            raise
    return proc.returncode


def wait_http(url: str, timeout_s: float, proc: subprocess.Popen) -> None:
    """Block until ``url`` answers (a child's health endpoint); fail early if the child exits."""
    t0 = time.time()
    while time.time() - t0 < timeout_s:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited with {proc.returncode} before it was ready")
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"worker not ready after {timeout_s}s ({url})")
