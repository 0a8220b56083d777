"""The one error type that speaks to the user.

An `InputError` says what is wrong with something the user gave (a folder, a file, a flag), names it, and says what
to do. The command line prints its message as one line and exits with status 2; library callers catch it as a
`ValueError`.
"""


class InputError(ValueError):
    """Bad user input: a missing or empty folder, an unreadable image, a flag out of range."""
