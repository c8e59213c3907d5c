"""One exception type for everything a user can get wrong.

The CLI turns it into a one-line message and exit code 2, so any module can
raise it deep inside without knowing how it will be shown.
"""


class MnistEdgeError(Exception):
    """A problem with the user's input, files or tools (not a bug)."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (a library's own errors can run to pages)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def one_line(exc: BaseException) -> tuple[str, int]:
    """The one line a user sees for `exc`, and the CLI's exit code: 2 for their input, files
    or tools; 3 for a bug. The CLI prints it; the Python API raises it as MnistEdgeError."""
    import json
    import pickle
    import zipfile

    from .paths import os_error_message

    if isinstance(exc, MnistEdgeError):
        message, code = str(exc), 2
    elif isinstance(exc, OSError):
        message, code = os_error_message(exc), 2
    elif isinstance(exc, json.JSONDecodeError):
        message, code = f"not valid JSON ({exc})", 2
    elif isinstance(exc, UnicodeDecodeError):
        message, code = f"not a text file ({exc.reason} at byte {exc.start})", 2
    elif isinstance(exc, (zipfile.BadZipFile, pickle.UnpicklingError, EOFError)):
        message, code = f"unreadable file ({type(exc).__name__}: {exc or 'truncated'})", 2
    else:
        message, code = (f"internal error ({type(exc).__name__}: {exc}); this is a bug in "
                         "mnist-edge: rerun with MNIST_EDGE_DEBUG=1 for the traceback and "
                         "report it"), 3
    return " ".join(message.split()), code
