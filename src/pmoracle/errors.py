"""The error root of pmoracle. Every package raises subclasses of :class:`PmoracleError`."""

from __future__ import annotations


class PmoracleError(Exception):
    """Raised when anything in pmoracle rejects an input or fails an operation it owns."""


class InputError(PmoracleError):
    """Raised when user- or chain-supplied input is malformed; names the offending field and value."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
