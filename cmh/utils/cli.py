"""The argument parser every entry point uses: no prefix matching, a suggestion for an unknown
flag, every default in ``--help``.

``argparse`` by default takes ``--bit 16`` as ``--bits 16`` (prefix matching) and answers
``--batch_size`` with a bare "unrecognized arguments". :class:`Parser` turns prefix matching off
(``allow_abbrev=False``) and names the closest known flags (``difflib``) in the error, over the
flags of every subcommand too. :class:`HelpFormatter` keeps descriptions as written and appends
"(default: ...)" to every flag whose help does not already state its default.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys


class HelpFormatter(argparse.RawTextHelpFormatter):
    """Descriptions as written; "(default: X)" after each flag that has a default to show."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        shown = "%(default)" in text or "default" in text.lower()
        switch = action.nargs == 0 and not isinstance(action, argparse.BooleanOptionalAction)
        no_value = action.default in (None, argparse.SUPPRESS) or switch  # store_true: off
        if shown or no_value:
            return text
        return f"{text} (default: %(default)s)"


def _all_flags(parser: argparse.ArgumentParser) -> list[str]:
    """The long option strings of ``parser`` and of all its subcommands."""
    flags = [s for s in parser._option_string_actions if s.startswith("--")]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                flags += _all_flags(sub)
    return sorted(set(flags))


def suggestions(unknown: str, known: list[str]) -> list[str]:
    """The known flags closest to ``unknown`` (``--batch_size`` -> ``--batch-size``)."""
    name = unknown.split("=", 1)[0]
    dashed = "--" + name.lstrip("-").replace("_", "-")
    if dashed in known:  # --batch_size, -bits
        return [dashed]
    close = difflib.get_close_matches(dashed, known, n=2, cutoff=0.75)
    prefixed = [k for k in known if k.startswith(dashed) and k not in close]
    return (close + prefixed)[:3]


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` with ``allow_abbrev=False``, :class:`HelpFormatter` and
    "did you mean" suggestions for unknown flags."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # argparse's hook: print usage + message, exit 2
        match = re.match(r"unrecognized arguments: (.*)", message)
        if match:
            known = _all_flags(self)
            hints = []
            for word in match.group(1).split():
                if word.startswith("-"):
                    near = suggestions(word, known)
                    hint = f"did you mean {' or '.join(near)}?" if near else "no such flag"
                    hints.append(f"{word.split('=', 1)[0]}: {hint}")
            if hints:
                message = "unknown flag(s); " + "; ".join(hints)
        usage = self.format_usage()
        if usage.count("\n") <= 4:  # a long usage would bury the message
            self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message} ({self.prog} --help lists every flag)\n")
