"""The one exception type for input a user must fix.

Every module raises :class:`UserError` for bad input (a file, a line, a flag, a
value); entry points catch it, print the message and exit non-zero. Anything
else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input; the message names what to fix (file and line, flag, value)."""
