"""The one exception type for input a user must fix.

Every module raises :class:`UserError` for bad input (a file, a line, a flag, a
value); entry points catch it, print the message and exit non-zero. Anything
else is a bug and keeps its traceback.
"""

import difflib


class UserError(Exception):
    """Bad input; the message names what to fix (file and line, flag, value)."""


def did_you_mean(name: str, known: list[str]) -> str:
    """" (did you mean A or B?)" for the registered names closest to ``name``, or ""."""
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def check_all(*checks) -> None:
    """Run every check (callables that raise UserError); one UserError listing every problem
    found, in order, so a user fixes them all at once rather than one per try."""
    problems = []
    for check in checks:
        try:
            check()
        except UserError as e:
            problems.append(str(e))
    if len(problems) == 1:
        raise UserError(problems[0])
    if problems:
        listed = [p.replace("\n", "\n    ") for p in problems]  # a problem's own list indented
        raise UserError(f"{len(problems)} problems:\n  - " + "\n  - ".join(listed))
