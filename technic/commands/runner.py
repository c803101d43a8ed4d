"""Running a typer app the same way for `technic` and `technic-stream`.

Two CLI policies live here, once, for every command (including ones added later):

* **One-line errors.** A user error - a ``TechnicError``, any usage error typer/click raises
  (wrong type, value out of range, unknown option or command, missing option), a file that
  cannot be opened - prints one line ``error: <command>: <what>`` on stderr and exits 2,
  never a traceback. Typer bundles its own copy of click (``typer.BadParameter`` is not
  ``click.BadParameter``), so usage errors are recognized by typer's public base class
  ``typer.TyperException`` and, for older typers, by click's.
* **Numbers are non-negative.** Every numeric option of these CLIs is a count, a size, a
  duration, a rate, a port or a tolerance, so an int/float option without its own ``min``/``max``
  gets ``min=0`` (:func:`non_negative_numbers`); options that need more (``>= 1``) declare it.
  A negative ``--days`` is refused at parse time, naming the option.

Signals: SIGTERM and SIGHUP stop a command like Ctrl-C does (``technic.commands.shutdown``),
so every ``finally`` that stops children runs; a command stopped that way exits 0.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any, get_args, get_origin

import typer

from ..errors import TechnicError
from .shutdown import Shutdown, install_shutdown_handlers

EXIT_USAGE = 2


def _usage_error_types() -> tuple[type, ...]:
    types: list[type] = [typer.TyperException]
    try:  # an older typer raises the real click's exceptions
        import click
        types.append(click.ClickException)
    except ImportError:  # pragma: no cover - typer >= 0.2x bundles click
        pass
    return tuple(types)


def _abort_types() -> tuple[type, ...]:
    types: list[type] = [typer.Abort]
    try:
        import click
        types.append(click.exceptions.Abort)
    except ImportError:  # pragma: no cover
        pass
    return tuple(types)


def one_line(text: str) -> str:
    """Collapse a message to one line (click messages may carry a hint on a second line)."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _numeric(annotation: Any) -> bool:
    if annotation in (int, float):
        return True
    origin = get_origin(annotation)
    if origin is not None:  # Optional[int], List[int], list[float], ...
        args = [a for a in get_args(annotation) if a is not type(None)]
        return bool(args) and all(_numeric(a) for a in args)
    return False


def _walk_typer(app: typer.Typer):
    for info in app.registered_commands:
        yield info.callback
    for group in app.registered_groups:
        if group.typer_instance is not None:
            yield from _walk_typer(group.typer_instance)


def non_negative_numbers(app: typer.Typer) -> typer.Typer:
    """Give every int/float option and argument without a declared range ``min=0`` (see module doc)."""
    for callback in _walk_typer(app):
        if callback is None:
            continue
        try:  # annotations are strings under `from __future__ import annotations`
            params = inspect.signature(callback, eval_str=True).parameters.values()
        except NameError:
            params = inspect.signature(callback).parameters.values()
        for prm in params:
            info = prm.default
            if not isinstance(info, typer.models.ParameterInfo) or not _numeric(prm.annotation):
                continue
            if info.min is None and info.max is None:
                info.min = 0
    return app


def _command_path(exc) -> str:
    ctx = getattr(exc, "ctx", None)
    return getattr(ctx, "command_path", "") or ""


def run_app(typer_app: typer.Typer, argv: list[str] | None = None, prog_name: str | None = None,
            environment_errors: dict | None = None) -> None:
    """Run a typer app; user errors print one line and exit 2 (see module docstring).

    ``environment_errors`` maps further exception types to a prefix for their one-line message
    (``technic-stream``: a Kafka cluster that cannot be reached is the user's to fix, not a bug).
    """
    usage_errors, aborts = _usage_error_types(), _abort_types()
    env_errors = tuple(environment_errors or ())
    non_negative_numbers(typer_app)
    install_shutdown_handlers()
    try:
        typer_app(args=argv, prog_name=prog_name, standalone_mode=False)
    except TechnicError as e:
        _fail(str(e))
    except env_errors as e:
        prefix = next(v for k, v in environment_errors.items() if isinstance(e, k))
        _fail(f"{prefix}: {e}")
    except usage_errors as e:
        fmt = getattr(e, "format_message", None)
        msg = fmt() if callable(fmt) else str(e)
        if type(e).__name__ == "NoArgsIsHelpError":  # a group called without a command: its help
            print(msg)
            sys.exit(0)
        where = _command_path(e)
        _fail(f"{where}: {msg}" if where else msg)
    except OSError as e:  # a file named on the command line cannot be read/written
        if getattr(e, "filename", None) is None:
            raise
        _fail(f"{e.filename}: {e.strerror or e}")
    except Shutdown as e:  # SIGTERM / SIGHUP: the command cleaned up in its finally blocks
        print(f"stopped by {e.signame}", file=sys.stderr)
        sys.exit(0)
    except (KeyboardInterrupt, *aborts):
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except (typer.Exit, SystemExit) as e:  # typer's own exits
        code = getattr(e, "exit_code", getattr(e, "code", 0))
        sys.exit(code or 0)


def _fail(message: str, code: int = EXIT_USAGE) -> None:
    print(f"error: {one_line(message)}", file=sys.stderr)
    sys.exit(code)
