"""Every user error of every command of `technic` and `technic-stream`: one line, exit 2.

The command tree is introspected (typer -> click command objects), so a command added later
is covered without touching this file. For every command: an unknown option; for every
numeric option: a wrong type and a negative value; for every choice option: an unknown name;
for every input-file option: a file that does not exist; for every group: an unknown command.
Curated cases add the names that are not choices (topics, registry versions, model lists).
Each must print exactly one line ``error: ...`` on stderr naming what was wrong, exit with
status 2, and print no traceback. The four commands of issue 13's "Done means" run as real
subprocesses, exactly as a user types them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from stream.cli import app as stream_app
from stream.cli import main as stream_main
from technic.cli import app as technic_app
from technic.cli import main as technic_main
from technic.commands.runner import non_negative_numbers

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests" / "fixtures"
MISSING = "/nonexistent-technic-test/missing.csv"
#: options that name a file or directory the command reads
INPUT_FILES = {"bars", "fundamentals", "securities", "alt", "universe", "params", "data"}
APPS = {"technic": technic_app, "technic-stream": stream_app}
MAINS = {"technic": technic_main, "technic-stream": stream_main}


def _tree(app, prog):
    """(argv prefix, click command) of every leaf command and (prefix, group) of every group."""
    root = typer.main.get_command(non_negative_numbers(app))
    leaves, groups = [], []

    def walk(cmd, path):
        subs = getattr(cmd, "commands", None)
        if subs:
            groups.append((path, cmd))
            for name, sub in sorted(subs.items()):
                walk(sub, path + [name])
        else:
            leaves.append((path, cmd))
    walk(root, [])
    return leaves, groups


def _annotation(param):
    td = getattr(param, "type_descriptor", None)
    if td is not None:
        ann = td.annotation
        args = [a for a in getattr(ann, "__args__", ()) if a is not type(None)]
        return args[0] if args and getattr(ann, "__origin__", None) is not None else ann
    name = getattr(getattr(param, "type", None), "name", "")  # an older typer: click param types
    return {"integer": int, "float": float, "integer range": int, "float range": float}.get(name, str)


def _choices(param):
    td = getattr(param, "type_descriptor", None)
    if td is not None:
        return td.choices
    return getattr(getattr(param, "type", None), "choices", None)


def _is_option(param) -> bool:
    return bool(getattr(param, "opts", None)) and param.opts[0].startswith("-")


def _filler(param, tmp: Path) -> list[str]:
    """Valid-looking values for a required parameter other than the one under test."""
    ann = _annotation(param)
    if ann in (int, float):
        val = "1"
    elif param.name in INPUT_FILES:
        val = MISSING
    elif ann is Path:
        val = str(tmp / param.name)
    else:
        val = "x"
    return [param.opts[0], val] if _is_option(param) else [val]


def _cases(tmp: Path):
    """(id, prog, argv, expected text in the message)."""
    out = []
    for prog, app in APPS.items():
        leaves, groups = _tree(app, prog)
        for path, group in groups:
            out.append((f"{prog} {' '.join(path)} nosuchcommand", prog, path + ["nosuchcommand"], "nosuchcommand"))
        for path, cmd in leaves:
            name = " ".join([prog] + path)
            required = [p for p in cmd.params if p.required]
            out.append((f"{name} --nosuch-option", prog, path + ["--nosuch-option"], "--nosuch-option"))
            for p in cmd.params:
                rest = [a for q in required if q is not p for a in _filler(q, tmp)]
                if not _is_option(p) or getattr(p, "is_flag", False):
                    continue
                opt = p.opts[0]
                if _annotation(p) in (int, float):
                    out.append((f"{name} {opt} abc", prog, path + [opt, "abc"] + rest, opt))
                    out.append((f"{name} {opt} -5", prog, path + [opt, "-5"] + rest, opt))
                if _choices(p):
                    out.append((f"{name} {opt} nosuch", prog, path + [opt, "nosuch"] + rest, opt))
                if p.name in INPUT_FILES:  # the command may refuse another option first (one line too)
                    out.append((f"{name} {opt} <missing>", prog, path + [opt, MISSING] + rest, None))
    return out


def _run(prog: str, argv: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as ex:
        MAINS[prog](argv)
    return ex.value.code, capsys.readouterr().err


def _assert_one_line(code, err, expect, what):
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, f"{what}: exit {code}, stderr {err[-2000:]!r}"
    assert len(lines) == 1 and lines[0].startswith("error: "), f"{what}: {err[-2000:]!r}"
    assert "Traceback" not in err
    assert expect is None or expect in lines[0], f"{what}: {lines[0]!r} does not name {expect!r}"


def test_whole_command_tree_reports_user_errors_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # anything a command writes by default lands here
    monkeypatch.setenv("TECHNIC_REGISTRY", str(tmp_path / "no-registry"))
    cases = _cases(tmp_path)
    covered = {c[2][0] for c in cases if c[2]}
    assert {"demo", "backtest", "train", "registry", "features", "worker", "publish", "tail", "broker",
            "parity"} <= covered, covered
    assert len(cases) > 150
    failures = []
    for what, prog, argv, expect in cases:
        code, err = _run(prog, argv, capsys)
        try:
            _assert_one_line(code, err, expect, what)
        except AssertionError as e:
            failures.append(str(e).splitlines()[0])
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("argv,expect", [
    (["registry", "show", "v9999"], "v9999"),
    (["registry", "promote", "v9999"], "v9999"),
    (["registry", "rollback", "--to", "v9999"], "nothing is promoted"),
    (["backtest", "--bars", str(FIX / "bars_small.csv"), "--out", "OUT", "--models", "nosuch"], "nosuch"),
    (["train", "--bars", str(FIX / "bars_small.csv"), "--register", "--models", "nosuch"], "nosuch"),
    (["retrain", "--bars", str(FIX / "bars_small.csv"), "--registry", "REG", "--models", "nosuch"], "nosuch"),
    (["features", "compute", "--bars", str(FIX / "bars_small.csv"), "--out", "OUT", "--symbols", "0",
      "--fundamentals", MISSING], "nonexistent"),
])
def test_unknown_names_technic(argv, expect, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TECHNIC_REGISTRY", str(tmp_path / "registry"))
    argv = [a.replace("OUT", str(tmp_path / "out")).replace("REG", str(tmp_path / "reg")) for a in argv]
    code, err = _run("technic", argv, capsys)
    _assert_one_line(code, err, expect, " ".join(argv))


def test_tail_of_an_unknown_topic(tmp_path, capsys):
    code, err = _run("technic-stream", ["tail", "nosuchtopic", "--broker-dir", str(tmp_path / "broker")], capsys)
    _assert_one_line(code, err, "nosuchtopic", "tail nosuchtopic")


@pytest.mark.parametrize("argv", [["tail", "scores"], ["publish", "--bars", str(FIX / "bars_small.csv")],
                                  ["worker", "--registry", str(FIX)]])
def test_unreachable_cluster(argv, capsys):
    from stream.io.broker import free_port
    code, err = _run("technic-stream", argv + ["--bootstrap", f"127.0.0.1:{free_port()}"], capsys)
    _assert_one_line(code, err, "cannot reach the Kafka cluster", " ".join(argv))


DONE_MEANS = [
    (["technic", "demo", "--symbols", "abc"], "--symbols"),
    (["technic-stream", "worker", "--grace", "abc"], "--grace"),
    (["technic", "demo", "--days", "-5"], "--days"),
    (["technic-stream", "tail", "nosuchtopic"], "nosuchtopic"),
]


@pytest.mark.parametrize("argv,expect", DONE_MEANS, ids=[" ".join(a) for a, _ in DONE_MEANS])
def test_done_means_commands_exit_2_with_one_line(argv, expect, tmp_path):
    module = {"technic": "technic.cli", "technic-stream": "stream.cli"}[argv[0]]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("TECHNIC_BOOTSTRAP", None)  # tail must start (and stop) its own embedded broker
    r = subprocess.run([sys.executable, "-m", module, *argv[1:]], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=120)
    _assert_one_line(r.returncode, r.stderr, expect, " ".join(argv))
    assert not list(tmp_path.glob(".technic/broker/broker.json")), "the embedded broker was left running"
