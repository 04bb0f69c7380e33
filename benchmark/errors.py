"""The one exception type for user mistakes: the CLI prints it as one line and exits non-zero."""


class UserError(Exception):
    """A mistake in what the user asked for or supplied (bad name, bad file, bad value)."""
