"""The keeper's decisions, without I/O: the Liquidator's arithmetic mirrored exactly, and which action to take.

Amounts are the on-chain integers: USD with 18 decimals (WAD) for equity, margins, cash and payments; fractions and
discounts are WAD fractions. The functions round exactly as ``contracts/Liquidator.sol`` does, so a bid the keeper
computes is the bid the contract accepts (see docs/liquidation.md for the derivation).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from pmoracle.errors import InputError
from pmoracle.risk.inputs import WAD

TAKE_MAX = 2**256 - 1  # Liquidator.TAKE_MAX: a bid's fraction meaning "the largest allowed at the bid's block"
MAX_PAYMENT_SLACK = 10**12  # 1e-6 USD over the worst cost of a TAKE_MAX bid: the contract's rounding of f*


@dataclass(frozen=True, slots=True)
class AuctionParams:
    """The Liquidator's ``Params`` (WAD fractions, seconds), in the contract's field order."""

    buffer: int
    fast_discount: int
    max_discount: int
    fast_phase: int
    slow_phase: int
    fee_share: int
    min_fraction: int

    def __post_init__(self) -> None:
        if self.fast_phase <= 0 or self.slow_phase <= 0:
            raise InputError("params", f"phases must be > 0, got {self.fast_phase}, {self.slow_phase}")
        if not 0 <= self.fast_discount <= self.max_discount < WAD:
            raise InputError("params", f"need 0 <= fast_discount <= max_discount < WAD, got {self}")

    @property
    def plateau(self) -> int:
        """Seconds after which the discount stays at ``max_discount``."""
        return self.fast_phase + self.slow_phase


@dataclass(frozen=True, slots=True)
class Quote:
    """What a bid of ``fraction`` moves: ``payment`` (bidder to account; < 0: fund to bidder) and ``fee`` (bidder
    to fund), at ``discount``, with the largest fraction allowed then."""

    fraction: int
    max_fraction: int
    discount: int
    payment: int
    fee: int

    @property
    def cost(self) -> int:
        """Return what the bid costs the bidder in cash (payment + fee; negative: it receives a subsidy)."""
        return self.payment + self.fee


@dataclass(frozen=True, slots=True)
class BidderFunds:
    """What a bidding account brings (USD WAD): ``base``, its equity now (a cash-only account's cash; for an account
    with a book, its attested equity less what it withdrew since the round: ``MarginAccounts.withdrawableEquity``),
    and ``margin``, its attested maintenance margin (0 for a cash-only account).

    ``reserve`` is margin the keeper holds back beyond the contract's check: with a convex concentration add-on the
    bidder's merged book can carry more than M_B + f M (``risk.concentration.compute_bid_reserve`` bounds it for
    every fraction; docs/liquidation.md, "The bidder"), so the keeper judges itself as if its margin were
    M_B + reserve: stricter than the contract, never looser."""

    base: int
    margin: int = 0
    reserve: int = 0

    def headroom(self, params: AuctionParams) -> int:
        """Return base - (1 + b)(M_B + reserve): the equity free to carry a bid (rounded down)."""
        return self.base - _ceil_div((WAD + params.buffer) * (self.margin + self.reserve), WAD)


def _ceil_div(x: int, d: int) -> int:
    return -(-x // d)


def discount_at(params: AuctionParams, elapsed: int) -> int:
    """Return the discount ``elapsed`` seconds into an auction: linear to fast_discount, then to max_discount."""
    if elapsed < 0:
        raise InputError("elapsed", f"must be >= 0, got {elapsed}")
    if elapsed < params.fast_phase:
        return params.fast_discount * elapsed // params.fast_phase
    elapsed -= params.fast_phase
    if elapsed >= params.slow_phase:
        return params.max_discount
    return params.fast_discount + (params.max_discount - params.fast_discount) * elapsed // params.slow_phase


def whole_book(equity: int, mm: int, discount: int) -> bool:
    """Return whether only the whole book may be bid on: E < d M (an insolvent account included)."""
    return equity < 0 or equity * WAD < discount * mm


def max_fraction(params: AuctionParams, equity: int, mm: int, discount: int) -> int:
    """Return f* = ((1 + b) M - E) / ((1 + b - d) M) rounded up (WAD when E < d M, 0 when E >= (1 + b) M)."""
    if whole_book(equity, mm, discount):
        return WAD
    if equity * WAD >= (WAD + params.buffer) * mm:
        return 0
    num = (WAD + params.buffer) * mm - equity * WAD
    den = (WAD + params.buffer - discount) * mm
    return min(WAD, _ceil_div(num * WAD, den))


def min_fraction(params: AuctionParams, equity: int, mm: int, discount: int) -> int:
    """Return the smallest fraction a bid may take: WAD when E < d M, else max(1, min(minFraction, f*))."""
    if whole_book(equity, mm, discount):
        return WAD
    return max(1, min(params.min_fraction, max_fraction(params, equity, mm, discount)))


def quote(params: AuctionParams, fraction: int, equity: int, mm: int, discount: int) -> Quote:
    """Return what a bid of ``fraction`` moves: payment f (E - d M) and fee f d M x feeShare, both rounded up.

    Errors:
        InputError when ``fraction`` is outside [min_fraction, max_fraction] (the contract's FractionBelowMin and
        FractionAboveMax).
    """
    most = max_fraction(params, equity, mm, discount)
    least = min_fraction(params, equity, mm, discount)
    if not least <= fraction <= most:
        raise InputError("fraction", f"{fraction} outside [{least}, {most}]")
    payment = _ceil_div((equity * WAD - discount * mm) * fraction, WAD * WAD)
    fee = _ceil_div(fraction * discount * mm * params.fee_share, WAD**3)
    return Quote(fraction, most, discount, payment, fee)


def bidder_equity_after(base: int, q: Quote, equity: int) -> int:
    """Return a bidder's equity after the bid: base - payment - fee + f E (rounded down)."""
    return base - q.cost + equity * q.fraction // WAD


def bidder_required(params: AuctionParams, q: Quote, mm: int, bidder_margin: int = 0) -> int:
    """Return the equity a bidder must keep after the bid: (1 + b)(M_B + f M), rounded up."""
    return _ceil_div((WAD + params.buffer) * (bidder_margin * WAD + q.fraction * mm), WAD * WAD)


def bidder_solvent(params: AuctionParams, funds: BidderFunds, q: Quote, equity: int, mm: int) -> bool:
    """Return whether the contract's bidder check passes (BidderUnderMargin otherwise), with the keeper's own
    ``reserve`` counted as margin (0: exactly the contract's check)."""
    return bidder_equity_after(funds.base, q, equity) >= bidder_required(params, q, mm, funds.margin + funds.reserve)


def gain(q: Quote, equity: int) -> int:
    """Return the bidder's gain when the whole book is worth ``equity``: f E - payment - fee (at the attested E,
    about f d M (1 - feeShare))."""
    return equity * q.fraction // WAD - q.cost


class Action(Enum):
    """What the keeper does about one account in the latest attested round."""

    START = "start"  # below maintenance margin, no auction: start one
    BID = "bid"  # an open auction whose bid pays: bid
    WAIT = "wait"  # an open auction whose bid does not pay yet (the discount grows), or the keeper cannot afford
    END = "end"  # an open auction on an account the round attests at or above maintenance margin: end it
    NONE = "none"  # healthy, no auction


@dataclass(frozen=True, slots=True)
class Policy:
    """The keeper's own limits (USD WAD)."""

    min_profit: int  # the least gain f E - cost, after gas, for which it bids
    gas_cost: int  # what one bid's gas costs it, in USD WAD (an estimate)
    # Bid only once the discount stops moving: the fraction that restores an account exactly depends on the second
    # a bid is mined while it moves (a bid mined later takes less than the then allowed maximum and leaves the
    # auction open); on the plateau one bid restores the account whenever it lands.
    wait_for_plateau: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    """The action on one account, with the quote of the bid when the action is BID (or WAIT on an open auction)."""

    action: Action
    quote: Quote | None = None
    reason: str = ""
    # BID only: send TAKE_MAX (the largest fraction at the block that mines it, so the bid restores the account
    # whenever it lands) with this limit on its cost, instead of ``quote.fraction`` with ``quote.cost``
    take_max: bool = False
    max_payment: int | None = None

    @property
    def bid_args(self) -> tuple[int, int]:
        """Return the bid's (fraction, maxPayment) arguments."""
        assert self.quote is not None, "only a decision with a quote bids"
        if self.take_max:
            assert self.max_payment is not None
            return TAKE_MAX, self.max_payment
        return self.quote.fraction, self.quote.cost


def afford(params: AuctionParams, funds: BidderFunds, equity: int, mm: int, discount: int, most: int) -> int:
    """Return the largest fraction <= ``most`` whose bid leaves the bidder solvent (0: none).

    Its equity after is base + f d M (1 - feeShare) against (1 + b)(M_B + f M); the rounding of the contract is then
    checked exactly, stepping down by one unit at a time (a few steps at most).
    """
    net = (WAD + params.buffer) * mm * WAD - discount * mm * (WAD - params.fee_share)  # per WAD of f, x WAD^2
    f = most if net <= 0 else min(most, max(0, funds.headroom(params)) * WAD**3 // net)
    for _ in range(8):
        if f <= 0:
            return 0
        q = quote_or_none(params, f, equity, mm, discount)
        if q is not None and bidder_solvent(params, funds, q, equity, mm):
            return f
        f -= max(1, f // 10**12)
    return 0


def take_max_bound(params: AuctionParams, funds: BidderFunds, equity: int, mm: int, discount: int) -> int | None:
    """Return the cost limit of a TAKE_MAX bid quoted at ``discount`` and mined at any later discount, or None when
    some later discount would leave the bidder under its margin.

    Between ``discount`` and max_discount, f* rises with d while the bidder's surplus after the bid,
    base - (1 + b) M_B + f* (d M (1 - feeShare) - (1 + b) M), falls; past E = d M the bid takes the whole book and
    the surplus rises again; the cost f* (E - d M (1 - feeShare)) is monotone in d on each branch. So checking the
    ends and the branch point bounds every discount in between (docs/liquidation.md, "The keeper").
    """
    points = {discount, params.max_discount}
    if equity > 0 and discount * mm <= equity * WAD < params.max_discount * mm:
        points |= {equity * WAD // mm, -(-equity * WAD // mm)}
    worst = None
    for d in sorted(points):
        q = quote(params, max_fraction(params, equity, mm, d), equity, mm, d)
        if not bidder_solvent(params, funds, q, equity, mm):
            return None
        worst = q.cost if worst is None else max(worst, q.cost)
    assert worst is not None
    return worst + MAX_PAYMENT_SLACK


def quote_or_none(params: AuctionParams, fraction: int, equity: int, mm: int, discount: int) -> Quote | None:
    """Return ``quote``, or None when the fraction is outside the allowed range."""
    try:
        return quote(params, fraction, equity, mm, discount)
    except InputError:
        return None


def decide(
    params: AuctionParams,
    policy: Policy,
    *,
    equity: int,
    mm: int,
    auction_started_at: int | None,
    now: int,
    funds: BidderFunds,
    equity_now: int | None = None,
) -> Decision:
    """Return what to do about an account attested at ``equity``/``mm`` whose auction started at
    ``auction_started_at`` (None: no auction), for a bid mined at time ``now`` by a bidder bringing ``funds``.

    The keeper bids the largest allowed fraction (one bid restores the account) when it can afford it, as TAKE_MAX
    when it can also afford every later discount (the fraction is then fixed by the block that mines it), else the
    largest fraction it can afford (never on a whole-book auction); it bids when the gain after gas reaches
    ``policy.min_profit``, and waits otherwise: the discount only grows. With ``equity_now`` (the account's equity
    at current marks, from the engine) the book it would receive is valued at the lower of the two: f x E is what
    the fraction is worth (equity is linear in the book), and prices that moved since the round are the bidder's.
    ``now`` should be the earliest time the bid can be mined (the latest block's): a later block only raises the
    discount, so the bid's cost can only fall (never PaymentAboveLimit) and its fraction stays allowed (never
    FractionAboveMax).
    """
    breached = equity < mm
    if auction_started_at is None:
        return Decision(Action.START if breached else Action.NONE)
    if not breached:
        return Decision(Action.END, reason="restored")
    elapsed = max(0, now - auction_started_at)
    if policy.wait_for_plateau and elapsed < params.plateau:
        return Decision(Action.WAIT, reason=f"discount still moving ({elapsed} s of {params.plateau} s)")
    discount = discount_at(params, elapsed)
    most = max_fraction(params, equity, mm, discount)
    f = afford(params, funds, equity, mm, discount, most)
    if f < min_fraction(params, equity, mm, discount):
        return Decision(Action.WAIT, reason=f"headroom {funds.headroom(params)} cannot carry the least fraction")
    q = quote(params, f, equity, mm, discount)
    value = equity if equity_now is None else min(equity, equity_now)
    net = gain(q, value) - policy.gas_cost
    if net < policy.min_profit:
        return Decision(Action.WAIT, q, reason=f"gain {net} below {policy.min_profit}")
    if f == most:
        bound = take_max_bound(params, funds, equity, mm, discount)
        if bound is not None:
            return Decision(Action.BID, q, take_max=True, max_payment=bound)
    return Decision(Action.BID, q)
