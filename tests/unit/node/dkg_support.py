"""Misbehaving DKG transports shared by the DKG tests."""

from __future__ import annotations

import random

from coincurve import PrivateKey

from pmoracle.consensus import frost_dkg_wire as wire
from pmoracle.consensus.frost_dkg import Round2Share
from pmoracle.node.frost_dkg_gossip import GossipDkgTransport
from pmoracle.p2p.codec import DkgMessage


class GarblingTransport(GossipDkgTransport):
    """A dealer that signs a share for member 1 which does not open (its ciphertext is random bytes): member 1
    counts it undecryptable and names the dealer missing, while the others finish."""

    async def send_share(self, share: Round2Share) -> None:
        if share.recipient != 1:
            await super().send_share(share)
            return
        signed = wire.sign_dkg_share(self.domain, self.context, share.dealer, 1, PrivateKey().public_key.format(),
                                     random.Random(9).randbytes(48), self._private_key)  # fmt: skip
        await self.gossip.publish_dkg(DkgMessage(self.gossip.network, signed))
