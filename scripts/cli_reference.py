"""The CLI reference as Markdown, rendered from `mnist_edge.cli.build_parser()` itself.

Why generated: a hand-copied option list drifts the day an option is added. The docs
build (scripts/docs_hooks.py) puts this text into docs/cli.md, and tests/test_docs.py
checks that every subcommand and option of the parser appears in it.

    python scripts/cli_reference.py        # print the Markdown (to preview it)
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
USAGE_WIDTH = 88  # fixed, so the page does not depend on the terminal that built it


def load_parser() -> argparse.ArgumentParser:
    """The checkout's parser. Importing mnist_edge.cli installs its Ctrl-C handlers; they are
    put back so that `mkdocs serve` still stops on Ctrl-C as usual."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    if "mnist_edge.cli" in sys.modules or threading.current_thread() is not threading.main_thread():
        from mnist_edge.cli import build_parser  # (only the main thread may set handlers)

        return build_parser()
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        from mnist_edge.cli import build_parser
    finally:
        for sig, handler in saved.items():
            if handler is not None and signal.getsignal(sig) is not handler:
                signal.signal(sig, handler)
    return build_parser()


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """name -> subparser, in the order the CLI defines them."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def arguments(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The documented arguments: every action but -h/--help and the subcommand selector."""
    return [a for a in parser._actions
            if not isinstance(a, argparse._HelpAction | argparse._SubParsersAction)]


_MARKDOWN = {"\\": "\\\\", "`": "\\`", "*": "\\*", "_": "\\_", "[": "\\[", "]": "\\]",
             "|": "\\|", "<": "&lt;", ">": "&gt;"}


def md_text(text: str) -> str:
    """Help text as literal text in a Markdown table cell: one line, nothing read as markup
    (`runs/<name>` would otherwise be an HTML tag, `*.png|jpg` emphasis and a new cell)."""
    return "".join(_MARKDOWN.get(ch, ch) for ch in " ".join(str(text).split()))


def _name(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{action.metavar or action.dest}`"
    if action.nargs == 0:
        return ", ".join(f"`{o}`" for o in action.option_strings)
    metavar = action.metavar or action.dest.upper()
    return ", ".join(f"`{o} {metavar}`" for o in action.option_strings)


def _details(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    help_text = parser._get_formatter()._expand_help(action) if action.help else ""
    parts = [md_text(help_text)] if help_text else []
    if action.choices:
        parts.append("one of " + ", ".join(f"`{c}`" for c in action.choices))
    if isinstance(action, argparse._AppendAction):
        parts.append("repeatable")
    if action.option_strings and action.required:
        parts.append("**required**")
    default = action.default
    if (action.option_strings and default not in (None, False, argparse.SUPPRESS)
            and action.nargs != 0 and "default" not in help_text):
        parts.append(f"default `{default}`")
    return "; ".join(parts)


def usage(parser: argparse.ArgumentParser) -> str:
    formatter = argparse.HelpFormatter(parser.prog, width=USAGE_WIDTH)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    return formatter.format_help().strip()


def command_markdown(name: str, parser: argparse.ArgumentParser) -> str:
    lines = [f"### mnist-edge {name}", "", md_text(parser.description or ""), "",
             "```text", usage(parser), "```", ""]
    args = arguments(parser)
    if args:
        lines += ["| argument | meaning |", "| --- | --- |"]
        lines += [f"| {_name(a)} | {_details(parser, a)} |" for a in args]
        lines.append("")
    return "\n".join(lines)


def cli_markdown(parser: argparse.ArgumentParser | None = None) -> str:
    """The whole reference: the command table, then one section per subcommand."""
    parser = parser or load_parser()
    subs = subcommands(parser)
    helps = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {c.dest: c.help for c in action._choices_actions}
    lines = ["```text", usage(parser), "```", "",
             "| command | what it does |", "| --- | --- |"]
    lines += [f"| [`{n}`](#mnist-edge-{n}) | {md_text(helps.get(n, ''))} |" for n in subs]
    lines += ["", "Options of `mnist-edge` itself: "
              + ", ".join(_name(a) for a in arguments(parser)) + ".", ""]
    lines += [command_markdown(n, p) for n, p in subs.items()]
    return "\n".join(lines)


if __name__ == "__main__":
    print(cli_markdown())
