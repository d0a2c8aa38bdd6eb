"""The risk-parameters document: TOML text -> a validated, frozen ``RiskParams`` with a canonical hash.

Every field is documented in ``docs/risk-model.md`` and in the bundled default document, which the shell reads
and passes in (:mod:`pmoracle.config.params`). Exact quantities (moves as multiples of the scan range, cover
fractions, the IM multiplier) are rationals (``"1/3"``, ``"0.35"``); scale factors are TOML floats. The canonical
bytes are the sorted compact JSON of the validated values and ``params_hash = keccak256(canonical bytes)``: nodes
with different parameters cannot form a quorum by accident.
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass, fields, is_dataclass, replace
from fractions import Fraction
from typing import Any

from eth_utils import keccak

from pmoracle.risk.errors import ParamsError
from pmoracle.risk.inputs import MONEY_SCALE
from pmoracle.risk.pmrm2_params import (
    SKEW_DIRECTIONS,
    VOL_DIRECTIONS,
    Pmrm2Basis,
    Pmrm2Collateral,
    Pmrm2Contingency,
    Pmrm2Margin,
    Pmrm2Params,
    Pmrm2Scenario,
    Pmrm2SkewShock,
    Pmrm2VolShock,
)

COVER_SCALE = 10**6  # cover fractions are exact multiples of 1e-6
# How an extreme move's cover is counted: "constant" (``extreme.cover`` for every move, SPAN) or "inverse_move"
# (``extreme.cover / |k|`` for a move of k ranges, Deribit's extended table). The first is the default.
COVER_SCALINGS = ("constant", "inverse_move")
# The unit of the vol shift k: "relative" (a shocked vol is ``vol x (1 + shock x k)``, Deribit) or "absolute" (``vol +
# shock x k``, vol points: SPAN's usual volatility scan range). The first is the default.
SHIFT_UNITS = ("relative", "absolute")
MAX_COVER_DEN = 2**31  # the kernel's exact ceil(loss x num / den) needs den**2 < 2**63
MAX_EXTREME_MOVE = Fraction(40)  # Deribit's extended table reaches +500% of a 16% range: 31.25 ranges
# The extended moves' dampener (``extreme.dampener_usd``): at most 1e9 USD, so a scenario's amount
# ``(|k| - 1) x dampener`` (|k| <= 40) stays below 3.9e18 MONEY, inside int64.
MAX_DAMPENER_USD = Fraction(10**9)
JOINT_MODES = ("together", "alone", "opposite")
PRICE_REFERENCES = ("fraction", "std")
MAX_IM_MULTIPLIER = Fraction(3, 2)  # keeps IM of any in-bound account inside int64 (see kernel.py)
MAX_IM_BUFFER = 2**60
MAX_FLOOR_BLOCKS = 1024  # bounds the policy state: the stressed lookback is kept as this many block maxima at most
MAX_PMRM2_SCENARIOS = 40  # Derive's own limit (PMRM_2.setScenarios)
PMRM2_COLLATERAL_FIELDS = ("im_haircut", "mm_haircut", "risk_cancelling")
STEP_CAP_BASES = ("range", "margin")  # what the policy's step cap bounds: the range, or range x price


@dataclass(frozen=True, slots=True)
class FloorParams:
    """The stressed-lookback floor of the policy (EMIR RTS 153/2013 Art. 28(1)(c) style)."""

    weight: Fraction  # the range is at least weight x the range of the largest EWMA variance in the lookback
    lookback_samples: int  # samples the stressed lookback covers at least (a multiple of block_samples)
    block_samples: int  # the lookback is kept as per-block maxima, so the state stays bounded

    @property
    def blocks(self) -> int:
        """Return how many completed blocks the lookback keeps besides the current one."""
        return self.lookback_samples // self.block_samples


@dataclass(frozen=True, slots=True)
class BufferParams:
    """The releasable buffer of the policy (EMIR RTS 153/2013 Art. 28(1)(a) style)."""

    size: Fraction  # the buffer as a fraction of the base range (1/4 = the regulation's 25%)
    stress_ratio: Fraction  # stress: the fast EWMA vol is at least this multiple of the slow one
    slow_decay: Fraction  # decay of the slow EWMA of squared returns (the stress reference)
    rebuild_samples: int  # after stress the buffer grows back to its size over this many samples


@dataclass(frozen=True, slots=True)
class VolPolicyParams:
    """Adaptive volatility-shock size: an EWMA of squared log changes of the reference-tenor ATM implied vol."""

    decay: Fraction
    sigmas: Fraction  # the shift is sigmas x the EWMA vol of log IV changes over the horizon
    seed_vol: Fraction  # annualised vol of log IV changes assumed before the first change
    min_shift: Fraction
    max_shift: Fraction


# [policy.underlying.SYM] may override these fields of [policy] for one underlying (docs/policy.md).
POLICY_OVERRIDE_FIELDS = ("seed_vol", "sigmas", "min_scan_range", "max_scan_range", "max_step_up", "max_step_down")
POLICY_FIELD_BOUNDS = {  # bounds of these [policy] fields, the same for their overrides
    "seed_vol": (Fraction(1, 10**4), Fraction(20)),
    "sigmas": (Fraction(1, 10), Fraction(20)),
    "min_scan_range": (Fraction(1, 10**6), Fraction(99, 100)),
    "max_scan_range": (Fraction(1, 10**6), Fraction(99, 100)),
    "max_step_up": (Fraction(1, 10**4), Fraction(10)),
    "max_step_down": (Fraction(1, 10**4), Fraction(99, 100)),
}


@dataclass(frozen=True, slots=True)
class PolicyOverride:
    """One underlying's ``[policy.underlying.SYM]``: the fields it sets (None: the section's value holds)."""

    underlying: str
    seed_vol: Fraction | None = None
    sigmas: Fraction | None = None
    min_scan_range: Fraction | None = None
    max_scan_range: Fraction | None = None
    max_step_up: Fraction | None = None
    max_step_down: Fraction | None = None


@dataclass(frozen=True, slots=True)
class PolicyParams:
    """Validated parameters of the adaptive margin policy (docs/policy.md gives the meaning of each field)."""

    sample_interval_seconds: int
    horizon_seconds: int  # the margin period of risk the range covers
    decay: Fraction  # EWMA decay per sample (RiskMetrics: 0.94 daily)
    sigmas: Fraction  # scan range = sigmas x EWMA vol over the horizon
    seed_vol: Fraction  # annualised vol assumed before the first return
    min_scan_range: Fraction
    max_scan_range: Fraction
    max_step_up: Fraction | None  # largest relative rise of the range per sample; None: no cap
    max_step_down: Fraction | None  # largest relative fall of the range per sample; None: no cap
    floor: FloorParams | None
    buffer: BufferParams | None
    vol: VolPolicyParams | None  # None: the document's constant vol.shift stays in force
    # "range": the step cap bounds the range's relative change; "margin": that of range x price (the one-unit margin).
    # "range" is left out of the canonical bytes, so documents written before the key keep their hash.
    step_cap_basis: str = "range"
    # [policy.underlying.SYM] tables in symbol order; () is left out of the canonical bytes (documents without
    # overrides keep their hash).
    overrides: tuple[PolicyOverride, ...] = ()

    def for_underlying(self, underlying: str) -> PolicyParams:
        """Return the parameters the policy applies to ``underlying``: its override's fields set, no overrides left.

        A state binds the hash of these effective parameters. Without an override for ``underlying`` (and so for
        every underlying of a document without overrides) they are this section without its override tables.
        """
        if not self.overrides:
            return self
        override = next((o for o in self.overrides if o.underlying == underlying), None)
        values = {} if override is None else {
            name: getattr(override, name) for name in POLICY_OVERRIDE_FIELDS if getattr(override, name) is not None
        }  # fmt: skip
        return replace(self, overrides=(), **values)

    @property
    def canonical_bytes(self) -> bytes:
        """Return the canonical encoding: sorted compact JSON of every field."""
        return canonical_bytes(self)

    @property
    def policy_hash(self) -> bytes:
        """Return keccak256 of the canonical bytes (bound into every policy state)."""
        return keccak(canonical_bytes(self))


@dataclass(frozen=True, slots=True)
class RiskParams:
    """Validated risk-model parameters (docs/risk-model.md gives the meaning of each field)."""

    version: int
    horizon_seconds: int
    max_feed_age_seconds: int
    price_reference: str
    scan_range: float
    scan_range_by_underlying: tuple[tuple[str, float], ...]
    price_moves: tuple[Fraction, ...]
    min_price_multiplier: float
    vol_shocks: tuple[Fraction, ...]
    vol_shift: float
    vol_tenor_days: float
    vol_power: Fraction
    vol_min_dte_days: float
    vol_max_shift: float
    min_vol: float
    max_vol: float
    extreme_moves: tuple[Fraction, ...]
    extreme_cover: Fraction
    joint_modes: tuple[str, ...]
    stressed_correlation: float
    im_multiplier: Fraction
    im_min_buffer: int  # MONEY units
    short_option_minimum: float
    es_level: float
    es_extreme_weight: float
    cross_short_option_charge: float
    # The adaptive margin policy ([policy], risk/policy.py); None keeps the document's hash what it was before.
    policy: PolicyParams | None = None
    # Derive's PMRM_2 model ([pmrm2], risk/pmrm2.py): ``pmoracle margin`` uses it instead of the scenario grid.
    # None keeps the document's hash what it was before the section existed.
    pmrm2: Pmrm2Params | None = None
    # The cascade stress test ([stress], risk/stress.py); None keeps the document's hash what it was before.
    stress: StressParams | None = None
    # The concentration and liquidity add-on ([concentration], risk/concentration.py): part of MM when present.
    # None keeps the document's hash what it was before the section existed.
    concentration: ConcentrationParams | None = None
    # The extended moves' vol state (``extreme.vol_shock``, a multiple of the tenor-scaled shift like ``vol.shocks``)
    # and cover scaling (``extreme.cover_scaling``). None, like "0" and "constant", is the SPAN rule (vol unchanged,
    # the same cover for every move) and keeps the document's hash what it was before the fields existed.
    extreme_vol_shock: Fraction | None = None
    extreme_cover_scaling: str | None = None
    # Deribit's roll shock ([roll_shock], risk/roll.py): part of MM when present. None keeps the document's hash what
    # it was before the section existed.
    roll_shock: RollShockParams | None = None
    # Per-underlying vol shifts (``vol.shift_by_underlying``; the adaptive policy's [policy.vol] sets them per round).
    # Empty keeps the document's hash what it was before the table existed.
    vol_shift_by_underlying: tuple[tuple[str, float], ...] = ()
    # The unit of the vol shift (``vol.shift_unit``): "absolute" adds shock x k to the vol. None, like "relative",
    # multiplies it by 1 + shock x k and keeps the document's hash what it was before the field existed.
    vol_shift_unit: str | None = None
    # The extended moves' dampener (``extreme.dampener_usd``, MONEY): an extreme move of k ranges brings the
    # scenario's counted P&L toward zero by ``(|k| - 1) x`` it, at most to zero. None, like "0", is no dampener and
    # keeps the document's hash what it was before the field existed.
    extreme_dampener: int | None = None

    @property
    def is_absolute_vol_shift(self) -> bool:
        """Check if the vol shift counts vol points (``vol.shift_unit = "absolute"``) rather than a relative change."""
        return self.vol_shift_unit == "absolute"

    def scan_range_of(self, underlying: str) -> float:
        """Return the scan range of ``underlying`` (its override, else the default)."""
        for symbol, value in self.scan_range_by_underlying:
            if symbol == underlying:
                return value
        return self.scan_range

    def vol_shift_of(self, underlying: str) -> float:
        """Return the vol shift ``k`` of ``underlying`` (its override, else the constant ``vol.shift``)."""
        for symbol, value in self.vol_shift_by_underlying:
            if symbol == underlying:
                return value
        return self.vol_shift

    @property
    def vol_power_eighths(self) -> int:
        """Return the tenor-scaling power in eighths (an integer by validation)."""
        return int(self.vol_power * 8)

    @property
    def canonical_bytes(self) -> bytes:
        """Return the canonical encoding: sorted compact JSON of every field."""
        return canonical_bytes(self)

    @property
    def params_hash(self) -> bytes:
        """Return keccak256 of the canonical bytes (the ``paramsHash`` of the network config)."""
        return keccak(canonical_bytes(self))


def _canonical_value(value: Any) -> Any:
    if isinstance(value, Fraction):
        return str(value)
    if isinstance(value, StressParams | NamedStress):
        return _canonical_document(value)
    if isinstance(value, tuple):
        return [_canonical_value(v) for v in value]
    if is_dataclass(value) and not isinstance(value, type):
        return _canonical_document(value)
    return value


def _canonical_document(params: Any) -> Any:
    doc = {}
    for f in fields(params):
        value = getattr(params, f.name)
        if f.name in ("policy", "pmrm2", "stress", "concentration") and value is None:
            continue  # documents without these optional sections keep the hash they had before the sections existed
        optional = ("extreme_vol_shock", "extreme_cover_scaling", "roll_shock", "vol_shift_unit", "extreme_dampener")
        if f.name in optional and value is None:
            continue  # likewise the optional extended-move fields, the roll shock and the vol shift's unit
        if f.name == "step_cap_basis" and value == "range":
            continue  # the default basis: policies written before the key existed keep their hash
        if f.name == "overrides" and value == ():
            continue  # no [policy.underlying.*] table: the policy keeps the hash it had before they existed
        if f.name == "vol_shift_by_underlying" and value == ():
            continue  # no vol.shift_by_underlying: the document keeps the hash it had before the table existed
        doc[f.name] = _canonical_value(value)
    return doc


def canonical_bytes(params: RiskParams | PolicyParams) -> bytes:
    """Return the sorted compact JSON of the validated values (floats as Python's shortest repr)."""
    doc = _canonical_document(params)
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


class _Reader:
    """Collects every problem of a document instead of stopping at the first."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.problems: list[str] = []
        self.used: set[str] = set()

    def _get(self, path: str) -> Any:
        self.used.add(path)
        node: Any = self.doc
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                self.problems.append(f"{path}: missing")
                return None
            node = node[part]
        return node

    def integer(self, path: str, lo: int, hi: int) -> int:
        value = self._get(path)
        if value is None:
            return lo
        if not isinstance(value, int) or isinstance(value, bool):
            self.problems.append(f"{path}: expected an integer, got {value!r}")
            return lo
        if not lo <= value <= hi:
            self.problems.append(f"{path}: {value} is outside [{lo}, {hi}]")
        return value

    def number(self, path: str, lo: float, hi: float, value: Any = None) -> float:
        if value is None:
            value = self._get(path)
            if value is None:
                return lo
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.problems.append(f"{path}: expected a number, got {value!r}")
            return lo
        result = float(value)
        if not lo <= result <= hi:  # also rejects NaN
            self.problems.append(f"{path}: {value!r} is outside [{lo}, {hi}]")
            return lo
        return result

    def rational(self, path: str, lo: Fraction, hi: Fraction, value: Any = None) -> Fraction:
        if value is None:
            value = self._get(path)
            if value is None:
                return lo
        if isinstance(value, bool) or not isinstance(value, str | int):
            self.problems.append(f'{path}: expected an exact rational as a string ("1/3", "0.35"), got {value!r}')
            return lo
        try:
            result = Fraction(value)
        except (ValueError, ZeroDivisionError):
            self.problems.append(f"{path}: {value!r} is not a rational number")
            return lo
        if not lo <= result <= hi:
            self.problems.append(f"{path}: {value!r} is outside [{lo}, {hi}]")
        return result

    def rationals(self, path: str, lo: Fraction, hi: Fraction, allow_empty: bool) -> tuple[Fraction, ...]:
        value = self._get(path)
        if value is None:
            return ()
        if not isinstance(value, list) or (not value and not allow_empty):
            self.problems.append(f"{path}: expected a {'' if allow_empty else 'non-empty '}list")
            return ()
        result = tuple(self.rational(f"{path}[{i}]", lo, hi, v) for i, v in enumerate(value))
        if len(set(result)) != len(result):
            self.problems.append(f"{path}: duplicate values")
        return result

    def boolean(self, path: str) -> bool:
        value = self._get(path)
        if value is None:
            return False
        if not isinstance(value, bool):
            self.problems.append(f"{path}: expected true or false, got {value!r}")
            return False
        return value

    def choice(self, path: str, options: tuple[str, ...]) -> str:
        value = self._get(path)
        if value is None:
            return options[0]
        if value not in options:
            self.problems.append(f"{path}: expected one of {', '.join(options)}, got {value!r}")
            return options[0]
        return str(value)


def _unknown_keys(doc: dict[str, Any], used: set[str], prefix: str = "") -> list[str]:
    problems = []
    for key, value in doc.items():
        path = f"{prefix}{key}"
        if path in FREE_KEY_TABLES:
            continue  # tables of free keys, checked by their readers
        if isinstance(value, dict):
            problems.extend(_unknown_keys(value, used, f"{path}."))
        elif path not in used:
            problems.append(f"{path}: unknown field")
    return problems


def parse_params(text: str) -> RiskParams:
    """Return the validated parameters of a TOML document; raise ``ParamsError`` listing every problem."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ParamsError([f"malformed TOML: {exc}"]) from exc
    r = _Reader(doc)
    version = r.integer("version", 1, 1)
    horizon = r.integer("horizon_seconds", 0, 30 * 86400)
    max_age = r.integer("max_feed_age_seconds", 1, 7 * 86400)
    reference = r.choice("price.reference", PRICE_REFERENCES)
    scan_hi = 6.0 if reference == "std" else 0.99
    scan_range = r.number("price.scan_range", 1e-6, scan_hi)
    overrides = _read_symbol_numbers(r, "price.scan_range_by_underlying", 1e-6, scan_hi)
    moves = r.rationals("price.moves", Fraction(-10), Fraction(10), allow_empty=False)
    min_mult = r.number("price.min_multiplier", 1e-6, 1.0)
    vol_shocks = r.rationals("vol.shocks", Fraction(-1), Fraction(1), allow_empty=False)
    vol_shift = r.number("vol.shift", 0.0, 10.0)
    vol_shift_overrides = _read_symbol_numbers(r, "vol.shift_by_underlying", 0.0, 10.0)
    tenor_days = r.number("vol.tenor_days", 1e-3, 3650.0)
    power = r.rational("vol.power", Fraction(0), Fraction(2))
    if (power * 8).denominator != 1:
        r.problems.append(f"vol.power: {power} is not a multiple of 1/8")
    min_dte = r.number("vol.min_dte_days", 1e-3, 3650.0)
    max_shift = r.number("vol.max_shift", 0.0, 0.99)
    min_vol = r.number("vol.min_vol", 1e-4, 1.0)
    max_vol = r.number("vol.max_vol", 0.01, 20.0)
    if max_vol <= min_vol:
        r.problems.append(f"vol.max_vol: {max_vol} must exceed vol.min_vol {min_vol}")
    shift_unit = _read_shift_unit(r, doc)
    extreme_moves = r.rationals("extreme.moves", -MAX_EXTREME_MOVE, MAX_EXTREME_MOVE, allow_empty=True)
    cover = r.rational("extreme.cover", Fraction(0), Fraction(1))
    if (cover * COVER_SCALE).denominator != 1:
        r.problems.append(f"extreme.cover: {cover} is not a multiple of 1/{COVER_SCALE}")
    extreme_vol, cover_scaling = _read_extreme_options(r, doc, extreme_moves, cover)
    dampener = _read_dampener(r, doc)
    modes_raw = r._get("joint.modes")
    modes: tuple[str, ...] = ()
    if isinstance(modes_raw, list) and modes_raw and all(m in JOINT_MODES for m in modes_raw):
        modes = tuple(m for m in JOINT_MODES if m in modes_raw)
        if len(modes) != len(modes_raw):
            r.problems.append("joint.modes: duplicate modes")
    elif modes_raw is not None:
        r.problems.append(f"joint.modes: expected a non-empty list of {', '.join(JOINT_MODES)}, got {modes_raw!r}")
    correlation = r.number("joint.stressed_correlation", 0.0, 1.0)
    im_multiplier = r.rational("margin.im_multiplier", Fraction(1), MAX_IM_MULTIPLIER)
    buffer_usd = r.rational("margin.im_min_buffer_usd", Fraction(0), Fraction(MAX_IM_BUFFER, MONEY_SCALE))
    if (buffer_usd * MONEY_SCALE).denominator != 1:
        r.problems.append(f"margin.im_min_buffer_usd: {buffer_usd} has more than 8 decimals")
    short_min = r.number("margin.short_option_minimum", 0.0, 1.0)
    es_level = r.number("expected_shortfall.level", 0.0, 0.999)
    es_extreme = r.number("expected_shortfall.extreme_weight", 0.0, 1.0)
    cross_charge = r.number("cross_margin.short_option_charge", 0.0, 1.0)
    policy = _read_policy(r) if "policy" in doc else None
    if policy is not None and reference != "fraction":  # the policy's ranges are fractions of the price
        r.problems.append(f'policy: needs price.reference = "fraction", got {reference!r}')
    if policy is not None and policy.vol is not None and shift_unit == "absolute":  # it sizes a relative shift
        r.problems.append('vol.shift_unit: "absolute" cannot take [policy.vol], which sizes a relative shift')
    pmrm2 = _read_pmrm2(r) if "pmrm2" in doc else None
    stress = _read_stress(r) if "stress" in doc else None
    concentration = _read_concentration(r) if "concentration" in doc else None
    roll_shock = _read_roll_shock(r) if "roll_shock" in doc else None
    r.problems.extend(_unknown_keys(doc, r.used))
    if r.problems:
        raise ParamsError(r.problems)
    return RiskParams(
        version=version,
        horizon_seconds=horizon,
        max_feed_age_seconds=max_age,
        price_reference=reference,
        scan_range=scan_range,
        scan_range_by_underlying=tuple(overrides),
        price_moves=moves,
        min_price_multiplier=min_mult,
        vol_shocks=vol_shocks,
        vol_shift=vol_shift,
        vol_tenor_days=tenor_days,
        vol_power=power,
        vol_min_dte_days=min_dte,
        vol_max_shift=max_shift,
        min_vol=min_vol,
        max_vol=max_vol,
        extreme_moves=extreme_moves,
        extreme_cover=cover,
        joint_modes=modes,
        stressed_correlation=correlation,
        im_multiplier=im_multiplier,
        im_min_buffer=int(buffer_usd * MONEY_SCALE),
        short_option_minimum=short_min,
        es_level=es_level,
        es_extreme_weight=es_extreme,
        cross_short_option_charge=cross_charge,
        policy=policy,
        pmrm2=pmrm2,
        stress=stress,
        concentration=concentration,
        extreme_vol_shock=extreme_vol,
        extreme_cover_scaling=cover_scaling,
        roll_shock=roll_shock,
        vol_shift_by_underlying=tuple(vol_shift_overrides),
        vol_shift_unit=shift_unit,
        extreme_dampener=dampener,
    )


def compute_extreme_covers(moves: tuple[Fraction, ...], cover: Fraction, scaling: str | None) -> list[Fraction]:
    """Return the fraction of each extreme move's loss that counts: ``cover``, or ``cover / |k|`` (inverse_move)."""
    if scaling == "inverse_move":
        return [cover / abs(k) if k != 0 else cover for k in moves]
    return [cover for _ in moves]


def compute_cover_den(moves: tuple[Fraction, ...], cover: Fraction, scaling: str | None) -> int:
    """Return the common denominator of every scenario's cover: ``COVER_SCALE`` under the constant rule, else the
    least common multiple of the extreme covers' denominators."""
    if scaling != "inverse_move":
        return COVER_SCALE
    den = 1
    for c in compute_extreme_covers(moves, cover, scaling):
        den = den * c.denominator // math.gcd(den, c.denominator)
    return den


def compute_extreme_dampers(moves: tuple[Fraction, ...], dampener: int | None) -> list[int]:
    """Return each extreme move's dampening amount in MONEY: ``floor((|k| - 1) x dampener)`` for a move of k ranges
    beyond one range, else 0 (rounded down: the counted loss is never lowered by more than the exact amount)."""
    if dampener is None:
        return [0 for _ in moves]
    return [math.floor((abs(k) - 1) * dampener) if abs(k) > 1 else 0 for k in moves]


def _read_dampener(r: _Reader, doc: dict[str, Any]) -> int | None:
    """Read the optional ``extreme.dampener_usd`` in MONEY (its default, 0, reads as None)."""
    table = doc.get("extreme")
    if not isinstance(table, dict) or "dampener_usd" not in table:
        return None
    usd = r.rational("extreme.dampener_usd", Fraction(0), MAX_DAMPENER_USD)
    if (usd * MONEY_SCALE).denominator != 1:
        r.problems.append(f"extreme.dampener_usd: {usd} has more than 8 decimals")
        return None
    return int(usd * MONEY_SCALE) or None


def _read_shift_unit(r: _Reader, doc: dict[str, Any]) -> str | None:
    """Read the optional ``vol.shift_unit`` (its default, "relative", reads as None)."""
    table = doc.get("vol")
    if not isinstance(table, dict) or "shift_unit" not in table:
        return None
    unit = r.choice("vol.shift_unit", SHIFT_UNITS)
    return None if unit == "relative" else unit


def _read_extreme_options(
    r: _Reader, doc: dict[str, Any], moves: tuple[Fraction, ...], cover: Fraction
) -> tuple[Fraction | None, str | None]:
    """Read the optional ``extreme.vol_shock`` and ``extreme.cover_scaling`` (their defaults read as None)."""
    table = doc.get("extreme")
    if not isinstance(table, dict):
        return None, None
    vol: Fraction | None = None
    if "vol_shock" in table:
        vol = r.rational("extreme.vol_shock", Fraction(-1), Fraction(1))
    scaling: str | None = None
    if "cover_scaling" in table:
        scaling = r.choice("extreme.cover_scaling", COVER_SCALINGS)
    if scaling == "inverse_move":
        for i, k in enumerate(moves):
            if abs(k) < 1:
                r.problems.append(
                    f'extreme.moves[{i}]: {k} is inside one range; cover_scaling "inverse_move" '
                    "counts cover / |move| and needs |move| >= 1"
                )
        den = compute_cover_den(moves, cover, scaling)
        if den > MAX_COVER_DEN:
            r.problems.append(
                f'extreme.cover_scaling: "inverse_move" gives the covers a common denominator {den} '
                f"above {MAX_COVER_DEN} (simpler moves or cover)"
            )
    return (vol or None), (None if scaling == "constant" else scaling)


def _read_symbol_numbers(r: _Reader, path: str, lo: float, hi: float) -> list[tuple[str, float]]:
    """Return an optional table of per-underlying numbers in ``[lo, hi]``, keyed by upper-case symbol, sorted."""
    section, key = path.rsplit(".", 1)
    table = r.doc.get(section)
    raw = r._get(path) if isinstance(table, dict) and key in table else None  # optional
    values: list[tuple[str, float]] = []
    if isinstance(raw, dict):
        for symbol in sorted(raw):
            if not (symbol.isascii() and symbol.isalnum() and symbol.isupper()):
                r.problems.append(f"{path}.{symbol}: not an upper-case symbol")
            values.append((symbol, r.number(f"{path}.{symbol}", lo, hi, raw[symbol])))
    elif raw is not None:
        r.problems.append(f"{path}: expected a table")
    return values


def parse_policy_params(text: str) -> PolicyParams | None:
    """Return the validated ``[policy]`` section of a parameters document (None without one); raise ``ParamsError``.

    Only the policy section is read, so a tool can load the policy of any document, and the rest of the document
    is checked by :func:`parse_params`.
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ParamsError([f"malformed TOML: {exc}"]) from exc
    if "policy" not in doc:
        return None
    r = _Reader(doc)
    policy = _read_policy(r)
    if isinstance(doc["policy"], dict):
        r.problems.extend(_unknown_keys(doc["policy"], r.used, "policy."))
    if r.problems:
        raise ParamsError(r.problems)
    return policy


def _has(doc: dict[str, Any], path: str) -> bool:
    node: Any = doc
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _read_policy(r: _Reader) -> PolicyParams | None:
    """Return the ``[policy]`` section read through ``r`` (problems are added to ``r.problems``)."""
    if not isinstance(r.doc.get("policy"), dict):
        r.used.add("policy")
        r.problems.append("policy: expected a table")
        return None
    zero, one = Fraction(0), Fraction(1)
    interval = r.integer("policy.sample_interval_seconds", 60, 7 * 86400)
    horizon = r.integer("policy.horizon_seconds", 60, 30 * 86400)
    decay = r.rational("policy.decay", zero, one)
    if not zero < decay < one:
        r.problems.append(f"policy.decay: {decay} must lie strictly between 0 and 1")
    sigmas = r.rational("policy.sigmas", *POLICY_FIELD_BOUNDS["sigmas"])
    seed_vol = r.rational("policy.seed_vol", *POLICY_FIELD_BOUNDS["seed_vol"])
    min_range = r.rational("policy.min_scan_range", *POLICY_FIELD_BOUNDS["min_scan_range"])
    max_range = r.rational("policy.max_scan_range", *POLICY_FIELD_BOUNDS["max_scan_range"])
    if max_range < min_range:
        r.problems.append(f"policy.max_scan_range: {max_range} is below policy.min_scan_range {min_range}")
    step_up = (
        r.rational("policy.max_step_up", *POLICY_FIELD_BOUNDS["max_step_up"])
        if _has(r.doc, "policy.max_step_up")
        else None
    )
    step_down = (
        r.rational("policy.max_step_down", *POLICY_FIELD_BOUNDS["max_step_down"])
        if _has(r.doc, "policy.max_step_down")
        else None
    )
    floor = None
    basis = r.choice("policy.step_cap_basis", STEP_CAP_BASES) if _has(r.doc, "policy.step_cap_basis") else "range"
    if basis == "margin" and step_up is None and step_down is None:  # a basis of no cap would only change the hash
        r.problems.append('policy.step_cap_basis: "margin" needs policy.max_step_up or policy.max_step_down')
    if _has(r.doc, "policy.floor"):
        weight = r.rational("policy.floor.weight", Fraction(1, 100), one)
        lookback = r.integer("policy.floor.lookback_samples", 1, 10**6)
        block = r.integer("policy.floor.block_samples", 1, 10**6)
        if block < 1:
            pass  # already reported out of range; the checks below would divide by it
        elif block > lookback or lookback % block:
            r.problems.append(f"policy.floor.lookback_samples: {lookback} is not a multiple of block_samples {block}")
        elif lookback // block > MAX_FLOOR_BLOCKS:
            r.problems.append(f"policy.floor: {lookback // block} blocks exceed the limit {MAX_FLOOR_BLOCKS}")
        floor = FloorParams(weight=weight, lookback_samples=lookback, block_samples=block)
    buffer = None
    if _has(r.doc, "policy.buffer"):
        size = r.rational("policy.buffer.size", Fraction(1, 100), one)
        ratio = r.rational("policy.buffer.stress_ratio", one, Fraction(10))
        if ratio == one:
            r.problems.append("policy.buffer.stress_ratio: must exceed 1")
        slow = r.rational("policy.buffer.slow_decay", zero, one)
        if not decay < slow < one:
            r.problems.append(f"policy.buffer.slow_decay: {slow} must lie strictly between policy.decay and 1")
        rebuild = r.integer("policy.buffer.rebuild_samples", 1, 10**6)
        buffer = BufferParams(size=size, stress_ratio=ratio, slow_decay=slow, rebuild_samples=rebuild)
    vol = None
    if _has(r.doc, "policy.vol"):
        vol_decay = r.rational("policy.vol.decay", zero, one)
        if not zero < vol_decay < one:
            r.problems.append(f"policy.vol.decay: {vol_decay} must lie strictly between 0 and 1")
        vol_sigmas = r.rational("policy.vol.sigmas", Fraction(1, 10), Fraction(20))
        vol_seed = r.rational("policy.vol.seed_vol", Fraction(1, 10**4), Fraction(50))
        # positive: the step cap moves the shift relative to its last value, so 0 could never rise again
        min_shift = r.rational("policy.vol.min_shift", Fraction(1, 1000), Fraction(99, 100))
        max_shift = r.rational("policy.vol.max_shift", Fraction(1, 1000), Fraction(99, 100))
        if max_shift < min_shift:
            r.problems.append(f"policy.vol.max_shift: {max_shift} is below policy.vol.min_shift {min_shift}")
        vol = VolPolicyParams(
            decay=vol_decay, sigmas=vol_sigmas, seed_vol=vol_seed, min_shift=min_shift, max_shift=max_shift
        )
    return PolicyParams(
        sample_interval_seconds=interval,
        horizon_seconds=horizon,
        decay=decay,
        sigmas=sigmas,
        seed_vol=seed_vol,
        min_scan_range=min_range,
        max_scan_range=max_range,
        max_step_up=step_up,
        max_step_down=step_down,
        floor=floor,
        buffer=buffer,
        vol=vol,
        step_cap_basis=basis,
        overrides=_read_policy_overrides(r, min_range, max_range),
    )


def _read_policy_overrides(r: _Reader, min_range: Fraction, max_range: Fraction) -> tuple[PolicyOverride, ...]:
    """Return the ``[policy.underlying.SYM]`` tables in symbol order, each field within its [policy] bounds."""
    tables = r.doc["policy"].get("underlying")
    if tables is None:
        return ()
    if not isinstance(tables, dict):
        r.problems.append("policy.underlying: expected a table of [policy.underlying.SYMBOL] tables")
        return ()
    overrides = []
    for symbol in sorted(tables):
        where = f"policy.underlying.{symbol}"
        table = tables[symbol]
        if not _is_symbol(symbol):  # an underlying is an upper-case symbol, as the feeds name it
            r.problems.append(f"{where}: not an upper-case underlying symbol")
            continue
        if not isinstance(table, dict) or not table:
            r.problems.append(f"{where}: expected a table of overrides ({', '.join(POLICY_OVERRIDE_FIELDS)})")
            continue
        values: dict[str, Fraction] = {}
        for name, value in table.items():
            if name not in POLICY_OVERRIDE_FIELDS:  # only a documented subset can differ per underlying
                r.problems.append(f"{where}.{name}: unknown field (overridable: {', '.join(POLICY_OVERRIDE_FIELDS)})")
                continue
            values[name] = r.rational(f"{where}.{name}", *POLICY_FIELD_BOUNDS[name], value)
        lo, hi = values.get("min_scan_range", min_range), values.get("max_scan_range", max_range)
        if hi < lo:  # the effective bounds of the underlying
            r.problems.append(f"{where}.max_scan_range: {hi} is below the underlying's min_scan_range {lo}")
        overrides.append(PolicyOverride(underlying=symbol, **values))
    return tuple(overrides)


def _read_pmrm2_scenarios(r: _Reader) -> tuple[Pmrm2Scenario, ...]:
    """Return ``pmrm2.scenarios``: 1 to 40 of them, at most one of each skew direction, skews at spot 1."""
    raw = r._get("pmrm2.scenarios")
    if raw is None:
        return ()
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_PMRM2_SCENARIOS:
        r.problems.append(f"pmrm2.scenarios: expected a list of 1 to {MAX_PMRM2_SCENARIOS} scenarios")
        return ()
    scenarios = []
    for i, item in enumerate(raw):
        path = f"pmrm2.scenarios[{i}]"
        if not isinstance(item, dict) or set(item) != {"spot", "vol", "dampening"}:
            r.problems.append(f"{path}: expected a table with exactly spot, vol and dampening")
            continue
        spot = r.number(f"{path}.spot", 0.0, 10.0, item["spot"])
        dampening = r.number(f"{path}.dampening", 0.0, 10.0, item["dampening"])
        vol = item["vol"]
        if vol not in VOL_DIRECTIONS:
            r.problems.append(f"{path}.vol: expected one of {', '.join(VOL_DIRECTIONS)}, got {vol!r}")
            continue
        if vol in SKEW_DIRECTIONS and spot != 1.0:
            r.problems.append(f"{path}.spot: a {vol} skew scenario moves no spot (1), got {item['spot']!r}")
        scenarios.append(Pmrm2Scenario(spot_shock=spot, vol=vol, dampening=dampening))
    for direction in SKEW_DIRECTIONS:
        if sum(s.vol == direction for s in scenarios) > 1:
            r.problems.append(f"pmrm2.scenarios: more than one {direction} skew scenario")
    return tuple(scenarios)


def _read_pmrm2_collateral(r: _Reader) -> tuple[Pmrm2Collateral, ...]:
    """Return the haircuts of the optional ``pmrm2.collateral.SYMBOL`` tables, sorted by symbol."""
    if not _has(r.doc, "pmrm2.collateral"):
        return ()
    raw = r._get("pmrm2.collateral")
    if not isinstance(raw, dict):
        if raw is not None:
            r.problems.append("pmrm2.collateral: expected a table of assets")
        return ()
    result = []
    for symbol in sorted(raw):
        path = f"pmrm2.collateral.{symbol}"
        if not (symbol.isascii() and symbol.isalnum() and symbol.isupper()):
            r.problems.append(f"{path}: not an upper-case symbol")
        spec = raw[symbol]
        if not isinstance(spec, dict):
            r.problems.append(f"{path}: expected a table")
            continue
        r.problems.extend(f"{path}.{k}: unknown field" for k in spec if k not in PMRM2_COLLATERAL_FIELDS)
        im = r.number(f"{path}.im_haircut", 0.0, 1.0)
        mm = r.number(f"{path}.mm_haircut", 0.0, 1.0)
        if im + mm > 1.0:
            r.problems.append(f"{path}.im_haircut: im_haircut + mm_haircut exceeds 1 ({im} + {mm})")
        result.append(Pmrm2Collateral(symbol, im, mm, r.boolean(f"{path}.risk_cancelling")))
    return tuple(result)


def _read_pmrm2(r: _Reader) -> Pmrm2Params | None:
    """Return the ``[pmrm2]`` section read through ``r``; the bounds are Derive's setters' (PMRMLib_2)."""
    if not isinstance(r.doc.get("pmrm2"), dict):
        r.used.add("pmrm2")
        r.problems.append("pmrm2: expected a table")
        return None
    scenarios = _read_pmrm2_scenarios(r)
    vol = Pmrm2VolShock(
        range_up=r.number("pmrm2.vol_shock.range_up", 0.0, 10.0),
        range_down=r.number("pmrm2.vol_shock.range_down", 0.0, 10.0),
        short_term_power=r.number("pmrm2.vol_shock.short_term_power", 0.0, 10.0),
        long_term_power=r.number("pmrm2.vol_shock.long_term_power", 0.0, 10.0),
        dte_floor_days=r.number("pmrm2.vol_shock.dte_floor_days", 0.0, 400.0),
        min_vol_up=r.number("pmrm2.vol_shock.min_vol_up", 0.0, 20.0),
    )
    skew = Pmrm2SkewShock(
        linear_base_cap=r.number("pmrm2.skew_shock.linear_base_cap", 0.0, 10.0),
        linear_c_base=r.number("pmrm2.skew_shock.linear_c_base", -10.0, 10.0),
        abs_base_cap=r.number("pmrm2.skew_shock.abs_base_cap", 0.0, 10.0),
        abs_c_base=r.number("pmrm2.skew_shock.abs_c_base", -10.0, 10.0),
        min_k_star=r.number("pmrm2.skew_shock.min_k_star", 0.0, 10.0),
        width_scale=r.number("pmrm2.skew_shock.width_scale", 0.0, 10.0),
        vol_param_static=r.number("pmrm2.skew_shock.vol_param_static", 0.0, 10.0),
        vol_param_scale=r.number("pmrm2.skew_shock.vol_param_scale", -20.0, 20.0),
    )
    margin = Pmrm2Margin(
        im_loss_factor=r.number("pmrm2.margin.im_loss_factor", 0.5, 10.0),
        mm_loss_factor=r.number("pmrm2.margin.mm_loss_factor", 0.1, 10.0),
        long_base_static_discount=r.number("pmrm2.margin.long_base_static_discount", 0.0, 4.0),
        long_rate_mult_scale=r.number("pmrm2.margin.long_rate_mult_scale", 0.0, 10.0),
        long_rate_add_scale=r.number("pmrm2.margin.long_rate_add_scale", 0.0, 10.0),
        short_base_static_discount=r.number("pmrm2.margin.short_base_static_discount", 0.0, 4.0),
        short_rate_mult_scale=r.number("pmrm2.margin.short_rate_mult_scale", 0.0, 10.0),
        short_rate_add_scale=r.number("pmrm2.margin.short_rate_add_scale", 0.0, 10.0),
    )
    basis = Pmrm2Basis(
        spot_up=r.number("pmrm2.basis.spot_up", 1.0, 3.0),
        spot_down=r.number("pmrm2.basis.spot_down", 0.0, 1.0),
        add_factor=r.number("pmrm2.basis.add_factor", 0.0, 20.0),
        mult_factor=r.number("pmrm2.basis.mult_factor", 0.0, 20.0),
    )
    contingency = Pmrm2Contingency(
        peg_loss_threshold=r.number("pmrm2.contingency.peg_loss_threshold", 0.0, 100.0),
        peg_loss_factor=r.number("pmrm2.contingency.peg_loss_factor", 0.0, 10.0),
        confidence_threshold=r.number("pmrm2.contingency.confidence_threshold", 0.0, 1.0),
        confidence_margin=r.number("pmrm2.contingency.confidence_margin", 0.0, 20.0),
        mm_perp_percent=r.number("pmrm2.contingency.mm_perp_percent", 0.0, 3.0),
        im_perp_percent=r.number("pmrm2.contingency.im_perp_percent", 0.0, 3.0),
        mm_option_percent=r.number("pmrm2.contingency.mm_option_percent", 0.0, 2.0),
        im_option_percent=r.number("pmrm2.contingency.im_option_percent", 0.0, 2.0),
    )
    collateral = _read_pmrm2_collateral(r)
    return Pmrm2Params(
        scenarios=scenarios,
        vol_shock=vol,
        skew_shock=skew,
        margin=margin,
        basis=basis,
        contingency=contingency,
        collateral=collateral,
    )


# --- [stress]: the cascade stress test (risk/stress.py, docs/stress.md) ------------------------------------------

# Tables of free keys (underlying symbols, stress names): read here, not walked by the unknown-field check.
STRESS_FREE_TABLES = ("stress.adv", "stress.daily_vol", "stress.scenarios")
MAX_STRESS_DEPTH = 100
STANDARD_STRESS = "standard"  # the named stress every node runs on its book each round (node metrics)


@dataclass(frozen=True, slots=True)
class NamedStress:
    """A named joint shock: relative price moves per underlying and one relative vol move for every smile."""

    name: str
    moves: tuple[tuple[str, Fraction], ...]  # (underlying, move > -1), sorted by symbol
    vol_shock: Fraction  # implied vols x (1 + vol_shock), > -1


@dataclass(frozen=True, slots=True)
class StressParams:
    """Validated ``[stress]`` section: the square-root impact law and the named stresses (docs/stress.md)."""

    impact: Fraction  # Y of move = Y x sigma x sqrt(Q / ADV)
    max_depth: int  # cascade steps at most
    adv: tuple[tuple[str, Fraction], ...]  # average daily volume per underlying, units of it, sorted by symbol
    daily_vol: tuple[tuple[str, Fraction], ...]  # daily sigma overrides; absent: ATM implied vol / sqrt(365)
    scenarios: tuple[NamedStress, ...]  # sorted by name; the one named STANDARD_STRESS is the node's

    def scenario(self, name: str) -> NamedStress | None:
        """Return the named stress ``name`` or None."""
        for s in self.scenarios:
            if s.name == name:
                return s
        return None


def _is_symbol(name: object) -> bool:
    return isinstance(name, str) and name.isascii() and name.isalnum() and name.isupper()


def _symbol_rationals(
    r: _Reader, path: str, lo: Fraction, hi: Fraction, table: Any
) -> tuple[tuple[str, Fraction], ...]:
    """Return the (symbol, rational) pairs of a table keyed by underlying symbols, sorted."""
    if not isinstance(table, dict):
        r.problems.append(f"{path}: expected a table")
        return ()
    pairs = []
    for symbol in sorted(table):
        if not _is_symbol(symbol):
            r.problems.append(f"{path}.{symbol}: not an upper-case symbol")
        pairs.append((symbol, r.rational(f"{path}.{symbol}", lo, hi, table[symbol])))
    return tuple(pairs)


def _read_stress(r: _Reader) -> StressParams | None:
    """Return the ``[stress]`` section read through ``r`` (problems are added to ``r.problems``)."""
    section = r.doc.get("stress")
    r.used.add("stress")
    if not isinstance(section, dict):
        r.problems.append("stress: expected a table")
        return None
    impact = r.rational("stress.impact", Fraction(0), Fraction(10))
    depth = r.integer("stress.max_depth", 1, MAX_STRESS_DEPTH)
    adv = _symbol_rationals(r, "stress.adv", Fraction(0), Fraction(10**15), r._get("stress.adv") or {})
    for symbol, volume in adv:
        if volume <= 0:
            r.problems.append(f"stress.adv.{symbol}: {volume} must be positive")
    daily_vol: tuple[tuple[str, Fraction], ...] = ()
    if "daily_vol" in section:
        daily_vol = _symbol_rationals(r, "stress.daily_vol", Fraction(0), Fraction(10), r._get("stress.daily_vol"))
    scenarios: list[NamedStress] = []
    named = section.get("scenarios", {})
    r.used.add("stress.scenarios")
    if not isinstance(named, dict):
        r.problems.append("stress.scenarios: expected a table")
        named = {}
    for name in sorted(named):
        path = f"stress.scenarios.{name}"
        spec = named[name]
        if not isinstance(spec, dict):
            r.problems.append(f"{path}: expected a table")
            continue
        for key in spec:
            if key not in ("moves", "vol_shock"):
                r.problems.append(f"{path}.{key}: unknown field")
        if "moves" not in spec:
            r.problems.append(f"{path}.moves: missing")
        moves = _symbol_rationals(r, f"{path}.moves", Fraction(-1), Fraction(10), spec.get("moves", {}))
        for symbol, move in moves:
            if move <= -1:
                r.problems.append(f"{path}.moves.{symbol}: {move} must exceed -1")
        vol_shock = Fraction(0)
        if "vol_shock" in spec:
            vol_shock = r.rational(f"{path}.vol_shock", Fraction(-1), Fraction(10), spec["vol_shock"])
            if vol_shock <= -1:
                r.problems.append(f"{path}.vol_shock: {vol_shock} must exceed -1")
        scenarios.append(NamedStress(str(name), moves, vol_shock))
    return StressParams(
        impact=impact,
        max_depth=depth,
        adv=adv,
        daily_vol=daily_vol,
        scenarios=tuple(scenarios),
    )


# --- [concentration]: the concentration and liquidity add-on (risk/concentration.py, docs/risk-model.md) ---------

CONCENTRATION_FREE_TABLES = ("concentration.adv", "concentration.daily_vol")
ROLL_SHOCK_FREE_TABLES = ("roll_shock.min_move", "roll_shock.annual_move")
FREE_KEY_TABLES = (
    "price.scan_range_by_underlying", "vol.shift_by_underlying", "policy.underlying", "pmrm2.collateral",
    *STRESS_FREE_TABLES, *CONCENTRATION_FREE_TABLES, *ROLL_SHOCK_FREE_TABLES,
)  # fmt: skip
MAX_ADV = Fraction(10**15)


@dataclass(frozen=True, slots=True)
class ConcentrationParams:
    """Validated ``[concentration]`` section: the cost of closing a position large against its market's volume.

    Per account and underlying, with ``Q`` the net delta-equivalent size and ``X = max(0, |Q| - threshold x ADV)``,
    the add-on is ``impact x daily_vol x sqrt(X / ADV) x X x index`` (docs/risk-model.md, "Concentration").
    """

    impact: Fraction  # Y of the square-root law
    threshold: Fraction  # the fraction of ADV a net position may reach free of charge
    adv: tuple[tuple[str, Fraction], ...]  # average daily volume per underlying, units of it, sorted by symbol
    daily_vol: tuple[tuple[str, Fraction], ...]  # daily sigma per underlying, same symbols as ``adv``


def _check_same_symbols(r: _Reader, *tables: tuple[str, tuple[tuple[str, Fraction], ...]]) -> None:
    """Add a problem for each symbol one of two symbol tables sets and the other does not."""
    (path_a, pairs_a), (path_b, pairs_b) = tables
    symbols_a, symbols_b = {s for s, _ in pairs_a}, {s for s, _ in pairs_b}
    for symbol in sorted(symbols_a - symbols_b):
        r.problems.append(f"{path_b}.{symbol}: missing ({path_a}.{symbol} is set)")
    for symbol in sorted(symbols_b - symbols_a):
        r.problems.append(f"{path_a}.{symbol}: missing ({path_b}.{symbol} is set)")


def _read_concentration(r: _Reader) -> ConcentrationParams | None:
    """Return the ``[concentration]`` section read through ``r`` (problems are added to ``r.problems``)."""
    section = r.doc.get("concentration")
    r.used.add("concentration")
    if not isinstance(section, dict):
        r.problems.append("concentration: expected a table")
        return None
    impact = r.rational("concentration.impact", Fraction(0), Fraction(10))
    threshold = r.rational("concentration.threshold", Fraction(0), Fraction(1))
    adv = _symbol_rationals(r, "concentration.adv", Fraction(0), MAX_ADV, r._get("concentration.adv") or {})
    for symbol, volume in adv:
        if volume <= 0:
            r.problems.append(f"concentration.adv.{symbol}: {volume} must be positive")
    daily_vol = _symbol_rationals(
        r, "concentration.daily_vol", Fraction(0), Fraction(10), r._get("concentration.daily_vol") or {}
    )
    _check_same_symbols(r, ("concentration.adv", adv), ("concentration.daily_vol", daily_vol))
    if not adv and isinstance(section.get("adv"), dict):
        r.problems.append("concentration.adv: expected at least one underlying")
    return ConcentrationParams(impact=impact, threshold=threshold, adv=adv, daily_vol=daily_vol)


@dataclass(frozen=True, slots=True)
class RollShockParams:
    """Validated ``[roll_shock]`` section: Deribit's roll shock, a charge on the net delta per expiry.

    Per account and underlying, MM adds ``index x (min_move x |perpetual delta| + sum over expiries e of
    max(exp(annual_move x T_e) - 1, min_move) x |net delta of e|)`` (docs/risk-model.md, "Roll shock").
    """

    min_move: tuple[tuple[str, Fraction], ...]  # Deribit's min_annualised_move per underlying, sorted by symbol
    annual_move: tuple[tuple[str, Fraction], ...]  # Deribit's annualised_move_risk per underlying, same symbols


def _read_roll_shock(r: _Reader) -> RollShockParams | None:
    """Return the ``[roll_shock]`` section read through ``r`` (problems are added to ``r.problems``)."""
    section = r.doc.get("roll_shock")
    r.used.add("roll_shock")
    if not isinstance(section, dict):
        r.problems.append("roll_shock: expected a table")
        return None
    minimum = _symbol_rationals(r, "roll_shock.min_move", Fraction(0), Fraction(1), r._get("roll_shock.min_move") or {})
    annual = _symbol_rationals(
        r, "roll_shock.annual_move", Fraction(0), Fraction(10), r._get("roll_shock.annual_move") or {}
    )
    _check_same_symbols(r, ("roll_shock.min_move", minimum), ("roll_shock.annual_move", annual))
    if not minimum and isinstance(section.get("min_move"), dict):
        r.problems.append("roll_shock.min_move: expected at least one underlying")
    return RollShockParams(min_move=minimum, annual_move=annual)
