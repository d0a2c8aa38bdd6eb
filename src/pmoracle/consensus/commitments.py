"""What a report commits to besides the account leaves: the round's risk arrays and its market inputs.

Risk-array tree (``Report.risk_arrays_root``), one row per ledger key the round's book holds, so anyone can
recompute an account's P&L in any scenario from its positions at B and a few rows (the aggregation fraud proof of
``MarginOracle.proveFraud``, docs/dispute.md):

- a row's preimage is ``abi.encodePacked(uint256 key, int64 base, int64 addon, int64[S] values)`` (big-endian,
  two's complement), and its leaf ``keccak256(keccak256(preimage))`` (double hashed like the account leaves);
- ``key`` is the instrument's ledger id (``MarginAccounts`` instrument id, < 2**32) for a derivative, and
  ``2**255 | decimals << 160 | token`` for a collateral token (its row is its asset's row; ``decimals`` turns a
  ledger balance into SIZE units exactly as the snapshot does); ``base`` is the mark value of one SIZE unit,
  ``addon`` the short-option add-on of one SIZE unit, ``values[s]`` the quantized P&L of one SIZE unit in scenario
  ``s`` (all MONEY, as the engine computes them);
- one more row, key ``2**256 - 1`` (``COVER_KEY``), holds the scenario cover fractions: ``base`` = their
  denominator, ``addon`` = 0, ``values[s]`` = the numerator of scenario ``s`` (the denominator for a normal one);
- one scenario row per underlying ``u`` of the market (its column in the scenario set), key
  ``SCENARIO_FLAG | u`` (``2**254 | u``), holds what a pricing challenge (``MarginOracle.challengePricing``) needs
  to rebuild an option's scenario values, as the IEEE-754 binary64 bits (read as a big-endian int64) of the engine's
  own floats: ``base`` = the horizon in years, ``addon`` = the vol shift's power in eighths (an integer),
  ``values`` = the ``S`` price multipliers of ``u``, then its ``S`` vol shocks, then the six vol parameters
  (``shift``, ``tenor_days``, ``min_dte_days``, ``max_shift``, ``min_vol``, ``max_vol``; ``shift`` is the
  underlying's own vol shift, the one the engine prices it with): ``2 S + 6`` words;
- leaves are sorted by key and the tree is the account tree's (sorted-pair hashing, OpenZeppelin ``MerkleProof``).

Market hash (``Report.market_hash``): ``keccak256`` of the ABI encoding of the market snapshot at B and the
adaptive policy's states hash (see ``compute_market_hash``): the inputs a pricing challenge recomputes a risk-array
entry from, scan ranges included.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
from eth_abi import encode as abi_encode

from pmoracle.consensus.hashing import keccak
from pmoracle.consensus.merkle import EMPTY_ROOT, AccountLeaf, compute_level_proof, compute_levels
from pmoracle.errors import InputError
from pmoracle.risk.inputs import SIZE_DECIMALS, Instrument, MarketSnapshot
from pmoracle.risk.margin import RiskArrays
from pmoracle.risk.scenarios import ScenarioSet
from pmoracle.risk.table import VOL_UNIT_PARAM, CollateralRef, InstrumentTable

COVER_KEY = 2**256 - 1
SCENARIO_FLAG = 1 << 254  # key of underlying u's scenario row: SCENARIO_FLAG | u
SCENARIO_VOL_PARAMS = 6  # shift, tenor_days, min_dte_days, max_shift, min_vol, max_vol (InstrumentTable.vol_params)
NO_POLICY = bytes(32)  # the policy hash of a round whose parameters have no [policy]
COLLATERAL_FLAG = 1 << 255
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_UINT32_MAX = 2**32 - 1

MARKET_ABI_TYPE = (
    "(uint64,"
    "(bytes32,uint256,int256,(uint64,int256,int256,int256,int256,int256)[],(uint64,uint256)[],uint64,"
    "(uint64,uint256)[])[],"
    "(bytes32,uint256,uint256,bytes32,uint64)[])"
)


@dataclass(frozen=True, slots=True)
class RiskRow:
    """One leaf of the risk-array tree: a ledger key's per-unit base value, add-on and scenario P&L (MONEY)."""

    key: int
    base: int
    addon: int
    values: tuple[int, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.key, int) or not 0 <= self.key <= COVER_KEY:
            raise InputError("key", f"must fit uint256, got {self.key!r}")
        for name, value in (("base", self.base), ("addon", self.addon), *(("values", v) for v in self.values)):
            if not isinstance(value, int) or not _INT64_MIN <= value <= _INT64_MAX:
                raise InputError(name, f"must fit int64, got {value!r} (key {self.key:#x})")


def instrument_key(instrument_id: int) -> int:
    """Return the row key of a ledger instrument id."""
    if not 0 < instrument_id <= _UINT32_MAX:
        raise InputError("instrument_id", f"must be a uint32 ledger id > 0, got {instrument_id}")
    return instrument_id


def collateral_key(token: bytes, decimals: int) -> int:
    """Return the row key of a collateral token with ``decimals`` decimals."""
    if len(token) != 20:
        raise InputError("token", f"expected a 20-byte address, got {token!r}")
    if not 0 <= decimals <= 255:
        raise InputError("decimals", f"must fit uint8, got {decimals}")
    return COLLATERAL_FLAG | decimals << 160 | int.from_bytes(token, "big")


def encode_row(row: RiskRow) -> bytes:
    """Return the packed preimage of a row's leaf."""
    parts = [row.key.to_bytes(32, "big"), row.base.to_bytes(8, "big", signed=True)]
    parts.append(row.addon.to_bytes(8, "big", signed=True))
    parts.extend(v.to_bytes(8, "big", signed=True) for v in row.values)
    return b"".join(parts)


def encode_values(values: Iterable[int]) -> bytes:
    """Return scenario values packed as int64 big-endian words (the ``values`` bytes ``proveFraud`` takes)."""
    return b"".join(v.to_bytes(8, "big", signed=True) for v in values)


def compute_row_hash(row: RiskRow) -> bytes:
    """Return the double-keccak leaf hash of a row."""
    return keccak(keccak(encode_row(row)))


class RiskArrayTree:
    """The Merkle tree over a round's risk-array rows (and its cover row), with proofs by key."""

    def __init__(self, rows: Sequence[RiskRow]) -> None:
        self.rows: list[RiskRow] = sorted(rows, key=lambda row: row.key)
        for prev, cur in pairwise(self.rows):
            if prev.key == cur.key:
                raise InputError("key", f"duplicate risk-array row {cur.key:#x}")
        self._index = {row.key: i for i, row in enumerate(self.rows)}
        self._levels = compute_levels([compute_row_hash(row) for row in self.rows])

    @property
    def root(self) -> bytes:
        """Return the root (``EMPTY_ROOT`` for no rows)."""
        return self._levels[-1][0] if self.rows else EMPTY_ROOT

    def __len__(self) -> int:
        return len(self.rows)

    def row_of(self, key: int) -> RiskRow:
        """Return the row of ``key``; raise ``InputError`` if the round has none."""
        index = self._index.get(key)
        if index is None:
            raise InputError("key", f"no risk-array row {key:#x} in this round")
        return self.rows[index]

    def proof(self, key: int) -> list[bytes]:
        """Return the sibling hashes from ``key``'s leaf up to the root."""
        index = self._index.get(key)
        if index is None:
            raise InputError("key", f"no risk-array row {key:#x} in this round")
        return compute_level_proof(self._levels, index)


def compute_cover_row(cover_num: Sequence[int], cover_den: int) -> RiskRow:
    """Return the row committing to the scenarios' cover fractions ``cover_num[s] / cover_den``."""
    return RiskRow(key=COVER_KEY, base=int(cover_den), addon=0, values=tuple(int(c) for c in cover_num))


def scenario_key(column: int) -> int:
    """Return the row key of the scenario row of the underlying in scenario column ``column``."""
    if not 0 <= column < 2**32:
        raise InputError("column", f"must be a scenario column (uint32), got {column}")
    return SCENARIO_FLAG | column


def float_bits(values: Iterable[float]) -> tuple[int, ...]:
    """Return each binary64 value's IEEE-754 bits as a signed int64 (what a scenario row commits)."""
    return tuple(int(v) for v in np.asarray(list(values), dtype=">f8").view(">i8"))


def compute_scenario_rows(scenarios: ScenarioSet, table: InstrumentTable) -> list[RiskRow]:
    """Return one scenario row per underlying column: the engine's horizon, vol-shift power, price multipliers,
    vol shocks and vol parameters, as binary64 bits (the module's docstring gives the layout).

    The row's ``shift`` is the underlying's own (``table.vol_shift[u]``: ``vol.shift_by_underlying`` or the adaptive
    policy's), the one the kernel prices it with, not the document's constant in ``vol_params[0]``.

    Raise ``InputError`` for a document whose vol shift counts vol points (``vol.shift_unit = "absolute"``): the row
    does not carry the unit and EntryPricer recomputes ``vol x (1 + shock x shift)``, so a round committing its
    honest entries could be challenged and invalidated."""
    if table.vol_params[VOL_UNIT_PARAM] != 0.0:
        raise InputError(
            "vol.shift_unit", '"absolute" cannot be committed: the pricing challenge recomputes a relative vol shift'
        )
    (horizon,) = float_bits([scenarios.horizon_years])
    return [
        RiskRow(
            key=scenario_key(u),
            base=horizon,
            addon=int(table.power_eighths),
            values=(
                *float_bits(scenarios.price_mult[:, u].tolist()),
                *float_bits(scenarios.vol_shock[:, u].tolist()),
                *float_bits([float(table.vol_shift[u]), *table.vol_params[1:SCENARIO_VOL_PARAMS].tolist()]),
            ),
        )
        for u in range(len(scenarios.underlyings))
    ]


def compute_risk_rows(
    arrays: RiskArrays,
    instrument_ids: Mapping[Instrument, Sequence[int]],
    tokens: Sequence[tuple[bytes, str, int]],
) -> list[RiskRow]:
    """Return the rows of a round: one per ledger key of every instrument and collateral asset of the book, the
    cover row and one scenario row per underlying.

    ``instrument_ids`` maps each engine ``Instrument`` to its ledger ids; ``tokens`` lists the ledger's collateral
    tokens as (address, symbol, decimals). Raise ``InputError`` for a derivative row without a ledger id, and for a
    document with an extended-move dampener (``extreme.dampener_usd``): the fraud proof sums the committed rows
    linearly (``ceil(loss x cover)`` per scenario), so an honest dampened MM would be provably below it.
    """
    if arrays.scenarios.is_dampened:
        raise InputError(
            "extreme.dampener_usd",
            "a dampened extended move cannot be committed: the fraud proof counts each scenario's loss undampened",
        )
    by_symbol: dict[str, list[tuple[bytes, int]]] = {}
    for token, symbol, decimals in tokens:
        by_symbol.setdefault(symbol, []).append((token, decimals))
    rows = [compute_cover_row(arrays.scenarios.cover_num.tolist(), arrays.scenarios.cover_den)]
    rows.extend(compute_scenario_rows(arrays.scenarios, arrays.table))
    for i, inst in enumerate(arrays.instruments):
        base, addon, values = int(arrays.base[i]), int(arrays.addon[i]), tuple(arrays.r[i].tolist())
        if isinstance(inst, CollateralRef):
            keys = [collateral_key(token, decimals) for token, decimals in by_symbol.get(inst.symbol, ())]
        else:
            ids = instrument_ids.get(inst)
            if not ids:
                raise InputError("instrument_id", f"no ledger id for {inst!r}")
            keys = [instrument_key(iid) for iid in ids]
        rows.extend(RiskRow(key=key, base=base, addon=addon, values=values) for key in keys)
    return rows


def _symbol_word(symbol: str | None) -> bytes:
    return b"\0" * 32 if symbol is None else symbol.encode().ljust(32, b"\0")


def market_abi_value(market: MarketSnapshot) -> tuple[object, ...]:
    """Return the market snapshot as the value of ``MARKET_ABI_TYPE`` (symbols as left-aligned bytes32): what
    ``MarginOracle.challengePricing`` takes as its ``market`` argument."""
    underlyings = [
        (
            _symbol_word(u.symbol),
            u.index,
            u.rate,
            [(s.expiry, s.a, s.b, s.rho, s.m, s.sigma) for s in u.smiles],
            list(u.forwards),
            u.updated_at,
            list(u.settlements),
        )
        for u in market.underlyings
    ]
    assets = [
        (_symbol_word(a.symbol), a.price, a.haircut, _symbol_word(a.underlying), a.updated_at) for a in market.assets
    ]
    return (market.time, underlyings, assets)


def encode_market(market: MarketSnapshot) -> bytes:
    """Return the ABI encoding ``MARKET_ABI_TYPE`` of a market snapshot (symbols as left-aligned bytes32).

    ``(time, underlyings[(symbol, index, rate, smiles[(expiry, a, b, rho, m, sigma)], forwards[(expiry, price)],
    updatedAt, settlements[(expiry, price)])], assets[(symbol, price, haircut, underlying, updatedAt)])``.
    """
    return abi_encode([MARKET_ABI_TYPE], [market_abi_value(market)])


def compute_market_hash(market: MarketSnapshot, policy_hash: bytes = NO_POLICY) -> bytes:
    """Return the market hash a report commits to: ``keccak256(abi.encode(market, policyHash))``.

    ``policy_hash`` is the adaptive policy's states hash at B (``risk.policy.compute_policy_hash``), whose scan
    ranges the round's scenarios used; ``NO_POLICY`` (zero) for a parameters document without ``[policy]``.
    """
    if not isinstance(policy_hash, bytes) or len(policy_hash) != 32:
        raise InputError("policy_hash", f"expected 32 bytes, got {policy_hash!r}")
    return keccak(abi_encode([MARKET_ABI_TYPE, "bytes32"], [market_abi_value(market), policy_hash]))


def collateral_size(balance: int, decimals: int) -> int:
    """Return a ledger token balance in SIZE units (1e-4), rounded down: what the chain snapshot holds."""
    scale: int = 10 ** abs(decimals - SIZE_DECIMALS)
    return balance // scale if decimals >= SIZE_DECIMALS else balance * scale


def decode_collateral_key(key: int) -> tuple[bytes, int]:
    """Return the (token, decimals) of a collateral row key."""
    if not key & COLLATERAL_FLAG or key == COVER_KEY:
        raise InputError("key", f"{key:#x} is not a collateral row key")
    return (key & (2**160 - 1)).to_bytes(20, "big"), (key >> 160) & 0xFF


def compute_scenario_margin(holdings: Sequence[tuple[RiskRow, int]], cover: RiskRow, scenario: int) -> int:
    """Return the least MM (MONEY) the rule allows for ``holdings`` (row, SIZE units) given scenario ``scenario``:
    ``max(0, ceil(-P&L[s] x c_s)) + sum over shorts of |size| x addon`` (``MarginOracle.proveFraud``'s bound).

    An honest MM is at least this in every scenario (its ``max_s``); an attested MM below it is a fraud.
    """
    if cover.key != COVER_KEY or not 0 <= scenario < len(cover.values):
        raise InputError("scenario", f"{scenario} is not a scenario of the cover row ({len(cover.values)})")
    pnl = sum(size * row.values[scenario] for row, size in holdings)
    addons = sum(-size * row.addon for row, size in holdings if size < 0)
    loss = -pnl
    counted = -((-loss * cover.values[scenario]) // cover.base) if loss > 0 else 0
    return counted + addons


@dataclass(frozen=True, slots=True)
class FraudProof:
    """The arguments of ``MarginOracle.proveFraud`` for one account of one round (amounts in leaf units)."""

    leaf: AccountLeaf
    account_proof: tuple[bytes, ...]
    cover: RiskRow
    cover_proof: tuple[bytes, ...]
    rows: tuple[tuple[RiskRow, tuple[bytes, ...]], ...]  # by increasing key
    scenario: int
    required: int  # the least MM the rule allows in ``scenario`` (leaf units, > leaf.maintenance_margin)


def compute_fraud_proof(
    leaf: AccountLeaf,
    account_proof: Sequence[bytes],
    risk_tree: RiskArrayTree,
    holdings: Mapping[int, int],
    money_to_leaf: int,
) -> FraudProof | None:
    """Return the proof that ``leaf`` understates its MM, or None if no scenario shows it.

    ``holdings`` maps each row key the account holds at B (every open position, every non-zero collateral balance)
    to its SIZE units; the scenario chosen is the first with the largest bound. Raise ``InputError`` if a held key
    has no row in ``risk_tree``.
    """
    cover = risk_tree.row_of(COVER_KEY)
    held = [(risk_tree.row_of(key), size) for key, size in sorted(holdings.items())]
    best, scenario = -1, 0
    for s in range(len(cover.values)):
        bound = compute_scenario_margin(held, cover, s)
        if bound > best:
            best, scenario = bound, s
    required = max(best, 0) * money_to_leaf
    if leaf.maintenance_margin >= required:
        return None
    rows = tuple((row, tuple(risk_tree.proof(row.key))) for row, _ in held)
    return FraudProof(
        leaf=leaf,
        account_proof=tuple(account_proof),
        cover=cover,
        cover_proof=tuple(risk_tree.proof(COVER_KEY)),
        rows=rows,
        scenario=scenario,
        required=required,
    )


def encode_risk_row(row: RiskRow, proof: Sequence[bytes]) -> tuple[int, int, int, bytes, list[bytes]]:
    """Return a row with its proof as the ABI tuple ``RiskRow`` of the contracts."""
    return (row.key, row.base, row.addon, encode_values(row.values), list(proof))


@dataclass(frozen=True, slots=True)
class PricingChallenge:
    """The arguments of ``MarginOracle.challengePricing`` for one option entry R[key, scenario] of a round."""

    market: MarketSnapshot
    policy_hash: bytes
    row: RiskRow
    row_proof: tuple[bytes, ...]
    scenario_row: RiskRow
    scenario_proof: tuple[bytes, ...]
    scenario: int


def compute_pricing_challenge(
    risk_tree: RiskArrayTree, market: MarketSnapshot, policy_hash: bytes, key: int, underlying: str, scenario: int
) -> PricingChallenge:
    """Return the challenge of entry ``scenario`` of row ``key`` (an option on ``underlying``) of ``risk_tree``.

    Raise ``InputError`` if the tree has no such row, the market no such underlying, or the row no such column.
    """
    symbols = [u.symbol for u in market.underlyings]
    if underlying not in symbols:
        raise InputError("underlying", f"{underlying!r} is not in the market snapshot ({', '.join(symbols)})")
    row = risk_tree.row_of(key)
    if not 0 <= scenario < len(row.values):
        raise InputError("scenario", f"{scenario} is not a column of row {key:#x} ({len(row.values)})")
    column_key = scenario_key(symbols.index(underlying))
    return PricingChallenge(
        market=market,
        policy_hash=policy_hash,
        row=row,
        row_proof=tuple(risk_tree.proof(key)),
        scenario_row=risk_tree.row_of(column_key),
        scenario_proof=tuple(risk_tree.proof(column_key)),
        scenario=scenario,
    )
