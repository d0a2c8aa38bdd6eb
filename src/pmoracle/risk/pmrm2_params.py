"""The parameters of Derive's PMRM_2 model (the ``[pmrm2]`` section of the parameters document, docs/parameters.md).

Plain frozen types without the model, so that reading a parameters document never imports the numeric engine.
"""

from __future__ import annotations

from dataclasses import dataclass

VOL_DIRECTIONS = ("up", "none", "down", "linear", "abs")
SKEW_DIRECTIONS = ("linear", "abs")


@dataclass(frozen=True, slots=True)
class Pmrm2Scenario:
    """One PMRM_2 scenario: spot multiplier, vol direction (``VOL_DIRECTIONS``) and dampening factor."""

    spot_shock: float
    vol: str
    dampening: float


@dataclass(frozen=True, slots=True)
class Pmrm2VolShock:
    """Tenor-scaled vol multipliers of the up and down scenarios."""

    range_up: float
    range_down: float
    short_term_power: float  # applies up to 30 days to expiry
    long_term_power: float
    dte_floor_days: float
    min_vol_up: float  # an up-shocked vol is at least this


@dataclass(frozen=True, slots=True)
class Pmrm2SkewShock:
    """The linear and absolute skew scenarios."""

    linear_base_cap: float
    linear_c_base: float
    abs_base_cap: float
    abs_c_base: float
    min_k_star: float
    width_scale: float
    vol_param_static: float
    vol_param_scale: float


@dataclass(frozen=True, slots=True)
class Pmrm2Margin:
    """Loss factors of IM and MM, and the static discounting of shocked expiry values."""

    im_loss_factor: float
    mm_loss_factor: float
    long_base_static_discount: float  # applies to a positive shocked expiry value
    long_rate_mult_scale: float
    long_rate_add_scale: float
    short_base_static_discount: float  # applies to a negative shocked expiry value
    short_rate_mult_scale: float
    short_rate_add_scale: float


@dataclass(frozen=True, slots=True)
class Pmrm2Basis:
    """The basis (forward) contingency: spot moves with vols unshocked, scaled by ``add + mult * T``."""

    spot_up: float
    spot_down: float
    add_factor: float
    mult_factor: float


@dataclass(frozen=True, slots=True)
class Pmrm2Contingency:
    """Stable-peg loss, oracle-confidence contingency, and the perp and option IM/MM percentages."""

    peg_loss_threshold: float
    peg_loss_factor: float
    confidence_threshold: float
    confidence_margin: float
    mm_perp_percent: float
    im_perp_percent: float
    mm_option_percent: float
    im_option_percent: float


@dataclass(frozen=True, slots=True)
class Pmrm2Collateral:
    """Haircuts of one collateral asset, and whether it moves with the underlying in the scenarios."""

    symbol: str
    im_haircut: float
    mm_haircut: float
    risk_cancelling: bool


@dataclass(frozen=True, slots=True)
class Pmrm2Params:
    """Validated parameters of the PMRM_2 model (the ``[pmrm2]`` section of the parameters document)."""

    scenarios: tuple[Pmrm2Scenario, ...]
    vol_shock: Pmrm2VolShock
    skew_shock: Pmrm2SkewShock
    margin: Pmrm2Margin
    basis: Pmrm2Basis
    contingency: Pmrm2Contingency
    collateral: tuple[Pmrm2Collateral, ...]  # sorted by symbol

    def collateral_of(self, symbol: str) -> Pmrm2Collateral | None:
        """Return the parameters of collateral ``symbol`` or None."""
        for c in self.collateral:
            if c.symbol == symbol:
                return c
        return None
