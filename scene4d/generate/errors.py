"""The errors of the generate job a user can fix (one line each; the CLI prints them, exit code 2)."""


class GenerateError(ValueError):
    """Bad input to ``generate``: the message says what and how to fix it."""


class PriorSpecError(ValueError):
    """A ``--prior`` / ``--video-prior`` value that names no usable prior."""
