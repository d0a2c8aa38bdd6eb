"""Errors of the risk engine: each names what went wrong and carries the offending field and value."""

from __future__ import annotations

from collections.abc import Sequence

from pmoracle.errors import InputError, PmoracleError


class ParamsError(PmoracleError):
    """Raised when a risk-parameters document is invalid; lists every problem found, not just the first."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("invalid risk parameters: " + "; ".join(self.problems))


class MissingSmileError(InputError):
    """Raised when an option's expiry has no implied-volatility smile in the market snapshot."""

    def __init__(self, underlying: str, expiry: int) -> None:
        super().__init__(f"underlyings.{underlying}.smiles", f"no smile for expiry {expiry} (unix seconds)")
        self.underlying = underlying
        self.expiry = expiry


class UnknownUnderlyingError(InputError):
    """Raised when a position refers to an underlying the market snapshot does not price."""

    def __init__(self, field: str, underlying: str) -> None:
        super().__init__(field, f"unknown underlying {underlying!r}")
        self.underlying = underlying


class UnknownCollateralError(InputError):
    """Raised when a portfolio holds a collateral asset the market snapshot does not price."""

    def __init__(self, asset: str) -> None:
        super().__init__(f"collateral.{asset}", f"unknown collateral asset {asset!r}")
        self.asset = asset


class StaleFeedError(InputError):
    """Raised when a price or volatility feed is older than ``max_feed_age_seconds`` at the valuation time."""

    def __init__(self, field: str, age: int, limit: int) -> None:
        super().__init__(field, f"feed is {age} s old at the valuation time, the limit is {limit} s")
        self.age = age
        self.limit = limit


class PricingError(InputError):
    """Raised when an instrument's value cannot be represented (non-positive variance, out-of-range P&L)."""


class AccountOverflowError(PmoracleError):
    """Raised when an account's exposure could overflow the int64 margin arithmetic (reported, never wrapped)."""

    def __init__(self, account: bytes, index: int, bound: float) -> None:
        super().__init__(f"account 0x{account.hex()} (#{index}): exposure bound {bound:.6g} exceeds the int64 limit")
        self.account = account
        self.index = index
        self.bound = bound


class ConcentrationOverflowError(PmoracleError):
    """Raised when a concentration add-on computed outside the kernel (isolated margin's gross exposure, a bidder's
    reserve) reaches 2**62 MONEY: the kernel reports such an account instead of summing it."""

    def __init__(self, exposure: int, value: float) -> None:
        self.exposure = exposure
        super().__init__(f"the concentration add-on {value:.6g} of exposure {exposure} reaches 2**62")
