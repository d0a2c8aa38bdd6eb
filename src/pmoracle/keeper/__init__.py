"""The liquidation keeper: watches attested rounds, starts auctions on accounts below maintenance margin and bids
on them when the discount pays for it (``pmoracle liquidator --config keeper.toml``).

``decision`` is the pure part (the Liquidator's arithmetic and the keeper's choice); ``keeper`` is the I/O shell.
"""
