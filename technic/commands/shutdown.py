"""SIGTERM and SIGHUP stop a command the way Ctrl-C does.

A supervisor, ``timeout``, CI or a closing terminal sends SIGTERM or SIGHUP, whose default
action kills the process on the spot: its ``finally`` blocks never run and the children it
started (embedded broker, worker) are left running, re-parented to PID 1. The handler installed
here raises :class:`Shutdown` (a ``KeyboardInterrupt``) in the main thread instead, so the
command unwinds exactly as on Ctrl-C: every ``finally`` stops and reaps its children and the
broker writes its snapshot. Further signals during that clean-up are ignored (they would cut
it short); Ctrl-C keeps Python's default and still interrupts. A signal that is ignored when
the command starts (``nohup`` ignores SIGHUP) stays ignored.
"""

from __future__ import annotations

import signal
import threading

SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Shutdown(KeyboardInterrupt):
    """Raised in the main thread by SIGTERM/SIGHUP; ``signame`` says which."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
        self.signame = signal.Signals(signum).name


_STATE = {"stopping": False}


def _on_signal(signum, frame):  # noqa: ARG001
    if _STATE["stopping"]:
        return  # already unwinding: let the clean-up finish
    _STATE["stopping"] = True
    raise Shutdown(signum)


def install_shutdown_handlers(signals=SIGNALS) -> list[int]:
    """Install the handler for ``signals`` (main thread only); return the signals handled."""
    if threading.current_thread() is not threading.main_thread():
        return []
    done = []
    for sig in signals:
        if signal.getsignal(sig) is signal.SIG_IGN:
            continue
        signal.signal(sig, _on_signal)
        done.append(sig)
    _STATE["stopping"] = False
    return done


def stopping() -> bool:
    """True once a SIGTERM/SIGHUP arrived."""
    return _STATE["stopping"]
