"""One exception type for everything a user can get wrong.

The CLI turns it into a one-line message and exit code 2, so any module can
raise it deep inside without knowing how it will be shown.
"""


class MnistEdgeError(Exception):
    """A problem with the user's input, files or tools (not a bug)."""
