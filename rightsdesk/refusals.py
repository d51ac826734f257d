"""A refusal the core words in English and an interface words in its own language.

The core's sentence (`str(exc)`) is what the CLI and the API print. `code` names the case and
`values` fill the interface's wording of it (the console's strings `refused_CODE`), so a
Chinese screen never shows the core's English.
"""

from __future__ import annotations


class Refusal(Exception):
    def __init__(self, message: str, code: str = "", **values: object) -> None:
        super().__init__(message)
        self.code = code
        self.values = values
