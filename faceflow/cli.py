"""The command-line machinery every entry point shares: a table of commands, imported lazily.

A command is a module with ``add_arguments(parser)`` and ``run(args) -> int``; the table names
it by its import path, so ``faceflow --help`` imports nothing and ``faceflow flow --help``
imports only the flow command's module (which keeps torch and friends inside ``run``). Groups
(``faceflow data``, ``faceflow reenact``) nest commands. :func:`dispatch` walks the words the
user typed down the table, builds the parser of the one command chosen, with the program name
the user typed in its usage line, and runs it through :func:`faceflow.errors.run_cli` (a
:class:`~faceflow.errors.FaceflowError` becomes ``error: ...`` and exit code 2).

Every entry point calls :func:`faceflow.runtime.threads.prefer_passive_wait` before torch loads (see
there: OpenMP's spin-waiting costs 7-10x when another process is busy).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import re
import shlex
import sys
from dataclasses import dataclass

from faceflow.errors import run_cli
from faceflow.runtime.provenance import running_module
from faceflow.runtime.threads import prefer_passive_wait


@dataclass(frozen=True)
class Command:
    """A leaf: ``target`` names a module (``"pkg.mod"``) or an object in one (``"pkg.mod:NAME"``)
    with ``add_arguments(parser)`` and ``run(args)``; its docstring is the command's description."""

    name: str
    target: str
    help: str


@dataclass(frozen=True)
class Group:
    """Sub-commands under one word (``faceflow data synth``)."""

    name: str
    help: str
    commands: tuple
    description: str = ""


_ROLE = re.compile(r":[a-z]+:`(~?)([^`<]*?)(?:\s*<[^>]*>)?`")


def plain_text(doc: str | None) -> str:
    """A docstring as terminal help: Sphinx roles (``:func:`~a.b``` -> ``b``) and double
    backquotes removed; everything else kept as written."""
    if not doc:
        return ""
    doc = inspect.cleandoc(doc)

    def role(m: re.Match) -> str:  # ``~`` keeps the last dotted part only, as Sphinx shows it
        text = m.group(2).strip()
        return text.rsplit(".", 1)[-1] if m.group(1) else text
    return _ROLE.sub(role, doc).replace("``", "")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's layout; appends ``(default: X)`` to an option that takes a value,
    has a default other than None and whose help does not already say its default."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (action.nargs == 0 or action.default in (None, argparse.SUPPRESS, [], ()) or "default" in text.lower()
                or not action.option_strings and action.nargs not in ("?", "*")):
            return text
        value = " ".join(map(str, action.default)) if isinstance(action.default, (list, tuple)) else action.default
        return f"{text} (default: {value})"


def leaves(group: Group, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Command]]:
    """Every command of a table with the words that reach it (``(("data", "synth"), Command)``),
    depth first."""
    out = []
    for c in group.commands:
        out += [(path + (c.name,), c)] if isinstance(c, Command) else leaves(c, path + (c.name,))
    return out


def program_name(module: str, argv: list[str] | None = None) -> str:
    """The command the user typed, for usage lines and manifests. Called by ``main(argv)`` of
    module ``module``: with ``argv`` given (a call from Python) it is ``python -m MODULE``;
    otherwise ``python -m PKG`` when Python runs a module with ``-m`` (``__main__`` then has a
    spec), else the script's name (``faceflow`` for the installed command)."""
    if argv is not None:
        return f"python -m {module}"
    if (name := running_module()):
        return f"python -m {name}"
    arg0 = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return arg0 if arg0 and not arg0.endswith(".py") and arg0 != "-c" else f"python -m {module}"


def _group_parser(group: Group, prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=plain_text(group.description or group.help),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for c in group.commands:
        sub.add_parser(c.name, help=c.help, add_help=False)
    return p


def command_parser(module, prog: str) -> argparse.ArgumentParser:
    """The parser of one command module (``add_arguments``), its docstring as the description."""
    p = argparse.ArgumentParser(prog=prog, description=plain_text(module.__doc__), formatter_class=HelpFormatter)
    module.add_arguments(p)
    return p


def run_module(module, argv: list[str] | None = None, prog: str | None = None) -> int:
    """Parse ``argv`` with ``module.add_arguments`` and run ``module.run`` (``python -m`` of a
    single-command module such as ``evaluation.flow_benchmark``). ``args.command_line`` is the
    command as the user typed it (program and words), which manifests record."""

    prefer_passive_wait()
    prog = prog or program_name(module.__name__, argv)
    words = list(sys.argv[1:] if argv is None else argv)
    args = command_parser(module, prog).parse_args(words)
    args.command_line = shlex.join(prog.split() + [str(w) for w in words])  # as typed, for manifests
    return run_cli(module.run, args)


def dispatch(group: Group, argv: list[str] | None = None, prog: str | None = None) -> int:
    """Run the command that ``argv`` (default ``sys.argv[1:]``) names in ``group``; only that
    command's module is imported."""
    words = list(sys.argv[1:] if argv is None else argv)
    prog = prog or program_name(group.name, argv)
    node: Group | Command = group
    while isinstance(node, Group):
        names = {c.name: c for c in node.commands}
        if not words or words[0] not in names:
            _group_parser(node, prog).parse_args(words[:1])  # prints the help or the usage error, exits
            return 2  # not reached
        node, prog = names[words[0]], f"{prog} {words[0]}"
        words = words[1:]

    module = run_cli(lambda: load_target(node.target))  # Ctrl-C or a user error while importing: no traceback
    if isinstance(module, int):
        return module
    return run_module(module, words, prog)


def load_target(target: str):
    """The module (``"pkg.mod"``) or the object in it (``"pkg.mod:NAME"``) a :class:`Command` names."""
    module, _, attr = target.partition(":")
    obj = importlib.import_module(module)
    return getattr(obj, attr) if attr else obj
