"""The one user-facing error type.

Anything a user can get wrong (a file, a variable, a shape, a config key) raises `UserInputError`
with a message that names the thing, says what is wrong and how to fix it. The CLI prints it as a
single `error: ...` line and exits with status 2; the Python API lets it propagate.
"""


class UserInputError(ValueError):
    """Bad input from the user: printed as one `error:` line, exit status 2, no traceback."""


class RunInterrupted(RuntimeError):
    """A run stopped before its end (Ctrl-C); the message says how to continue it. Exit 130."""


class RunFailed(RuntimeError):
    """The run itself failed (e.g. every worker crashed): one `error:` line, exit status 1."""
