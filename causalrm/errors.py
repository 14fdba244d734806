"""The one exception type for bad user input.

An ``InputError`` message is a single line that names the file, row or column at fault and says what to do.
The CLI prints it as ``error: <message>`` and exits with status 2; the app shows it with ``gr.Error``.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input (file, column, value or option), reported as one actionable line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))
