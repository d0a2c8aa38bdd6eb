// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {FrostVerifier} from "../../contracts/FrostVerifier.sol";
import {FrostVerifierHarness} from "./FrostVerifierHarness.sol";

/// @dev forge 1.7.1's `createWallet` (forge-std 1.1.2's `Vm` does not declare it): k G's affine coordinates.
interface VmWallets {
    struct Wallet {
        address addr;
        uint256 publicKeyX;
        uint256 publicKeyY;
        uint256 privateKey;
    }

    function createWallet(uint256 privateKey) external returns (Wallet memory);
    function assume(bool condition) external pure;
}

/// @notice Fuzz tests of FrostVerifier's refusal rules (docs/frost.md, "On-chain verification").
/// @dev Signatures come from two independent sources: a valid RFC 9591 signature of tests/vectors/frost_evm.json
///      (signed 2-of-3 by pmoracle.consensus.frost), and single-party Schnorr signatures built here from forge's
///      own secp256k1 (`createWallet` gives k G), z = k + c s with the library's challenge, which the anvil tests
///      check against RFC 9591's H2. The anvil differential tests cover every vector; these try to break each rule.
contract FrostVerifierTest {
    VmWallets internal constant vm = VmWallets(address(uint160(uint256(keccak256("hevm cheat code")))));

    uint256 internal constant N = FrostVerifier.ORDER;
    uint256 internal constant P = FrostVerifier.FIELD_PRIME;

    // tests/vectors/frost_evm.json, case 0: "valid 2-of-3 signature" (even group key, even R)
    uint256 internal constant PX = 0xf20f81fdd5cced95b6d1d27a3815d4355f56e3c8a901e543dd65f936cf3c92e6;
    uint8 internal constant PARITY = 0;
    bytes32 internal constant MESSAGE = 0xdf04add3036e90f570d54ababbf4e9a2ce27cfd2c27aa9c70671a232f555a7a1;
    uint256 internal constant RX = 0x639dc66bf83fb664a5ec4e9bb510e4e164a65f68d7a2356f039a1f6ff61817bb;
    uint256 internal constant RY = 0xe79f25b24dfc8e7ce70d3ce5959717a57157f4a33ae166e2a97e1bf09c5e5b94;
    uint256 internal constant Z = 0xddac262e3a81c7ae0ea4d1661240a0ef9527e94c8ebbd8e5a072bdd48a4a8506;

    // curve points with a small coordinate (whose coordinate + p fits in a word)
    uint256 internal constant Y_OF_X_1 = 0x4218f20ae6c646b363db68605822fb14264ca8d2587fdd6fbc750d587e76a7ee;
    uint256 internal constant X_OF_Y_1 = 0x1fe1e5ef3fceb5c135ab7741333ce5a6e80d68167653f6b2b24bcbcfaaaff507;

    FrostVerifierHarness internal harness = new FrostVerifierHarness();

    error Unexpected(string what, uint256 got, uint256 expected);

    function expectVerdict(FrostVerifier.Verdict got, FrostVerifier.Verdict expected, string memory what)
        internal
        pure
    {
        if (got != expected) revert Unexpected(what, uint256(got), uint256(expected));
    }

    function verdict(uint256 px, uint8 parity, bytes32 message, uint256 rx, uint256 ry, uint256 z)
        internal
        view
        returns (FrostVerifier.Verdict)
    {
        return FrostVerifier.Verdict(harness.tryVerify(px, parity, message, rx, ry, z));
    }

    /// @dev A Schnorr signature (R, z) of `message` under the key of `secret`, with nonce `nonce`: what FROST
    ///      signatures are (RFC 9591's prime_order_sign). Both scalars are reduced into [1, n).
    function schnorr(uint256 secret, uint256 nonce, bytes32 message)
        internal
        returns (uint256 px, uint8 parity, uint256 rx, uint256 ry, uint256 z)
    {
        VmWallets.Wallet memory key = vm.createWallet(secret % (N - 1) + 1);
        VmWallets.Wallet memory commitment = vm.createWallet(nonce % (N - 1) + 1);
        px = key.publicKeyX;
        parity = uint8(key.publicKeyY & 1);
        rx = commitment.publicKeyX;
        ry = commitment.publicKeyY;
        uint256 c = FrostVerifier.challenge(px, parity, message, rx, ry);
        z = addmod(commitment.privateKey, mulmod(c, key.privateKey, N), N);
        vm.assume(px < N && z != 0); // a key with x >= n cannot be registered (probability 2^-128)
    }

    function test_theVectorSignatureIsValid() public view {
        expectVerdict(verdict(PX, PARITY, MESSAGE, RX, RY, Z), FrostVerifier.Verdict.Valid, "vector");
        if (!harness.verify(PX, PARITY, MESSAGE, RX, RY, Z)) revert Unexpected("verify", 0, 1);
    }

    /// @dev The ecrecover technique verifies a Schnorr signature under any key and nonce, of both parities.
    function testFuzz_aSchnorrSignatureIsValid(uint256 secret, uint256 nonce, bytes32 message) public {
        (uint256 px, uint8 parity, uint256 rx, uint256 ry, uint256 z) = schnorr(secret, nonce, message);
        expectVerdict(verdict(px, parity, message, rx, ry, z), FrostVerifier.Verdict.Valid, "schnorr");
    }

    /// @dev Rule 0: a key the contract cannot hold is refused before anything else.
    function testFuzz_refusesAGroupKeyOutsideTheRange(uint256 px, uint8 parity) public view {
        vm.assume(px == 0 || px >= N || parity > 1);
        expectVerdict(verdict(px, parity, MESSAGE, RX, RY, Z), FrostVerifier.Verdict.InvalidGroupKey, "key");
    }

    /// @dev Rule 1: z >= n is refused, so z + n (when it fits in a word, for z below 2^256 - n) never verifies in
    ///      place of z, although ecrecover alone would accept it: h = -z P.x is reduced mod n.
    function testFuzz_refusesANonCanonicalZ(uint256 offset) public view {
        uint256 z = N + offset % (type(uint256).max - N + 1); // every word in [n, 2^256)
        expectVerdict(verdict(PX, PARITY, MESSAGE, RX, RY, z), FrostVerifier.Verdict.NonCanonicalZ, "z >= n");
        expectVerdict(verdict(PX, PARITY, MESSAGE, RX, RY, 0), FrostVerifier.Verdict.NonCanonicalZ, "z = 0");
    }

    /// @dev Any other canonical z is refused.
    function testFuzz_refusesAnotherZ(uint256 z) public view {
        vm.assume(z != Z && z != 0 && z < N);
        expectVerdict(verdict(PX, PARITY, MESSAGE, RX, RY, z), FrostVerifier.Verdict.WrongCommitment, "z");
    }

    /// @dev Rule 2: with R.x fixed, only R.y and p - R.y are curve points; every other R.y is refused as off the
    ///      curve, and p - R.y (the point -R) as the wrong commitment.
    function testFuzz_refusesAnRThatIsNotTheCommitment(uint256 ry) public view {
        vm.assume(ry != RY);
        FrostVerifier.Verdict expected =
            ry == P - RY ? FrostVerifier.Verdict.WrongCommitment : FrostVerifier.Verdict.CommitmentOffCurve;
        expectVerdict(verdict(PX, PARITY, MESSAGE, RX, ry, Z), expected, "R.y");
        expectVerdict(verdict(PX, PARITY, MESSAGE, RX, P - RY, Z), FrostVerifier.Verdict.WrongCommitment, "-R");
    }

    /// @dev Rule 2's range check: (x + p, y) and (x, y + p) satisfy the curve equation mod p but are refused. Only
    ///      points with a coordinate below 2^256 - p have such a twin: (1, y) and (x, 1) are two.
    function test_refusesUnreducedCoordinates() public view {
        if (!harness.isOnCurve(1, Y_OF_X_1)) revert Unexpected("(1, y) on the curve", 0, 1);
        if (!harness.isOnCurve(X_OF_Y_1, 1)) revert Unexpected("(x, 1) on the curve", 0, 1);
        expectVerdict(verdict(PX, PARITY, MESSAGE, 1 + P, Y_OF_X_1, Z), FrostVerifier.Verdict.CommitmentOffCurve, "x+p");
        expectVerdict(verdict(PX, PARITY, MESSAGE, X_OF_Y_1, 1 + P, Z), FrostVerifier.Verdict.CommitmentOffCurve, "y+p");
    }

    /// @dev isOnCurve holds for forge's own points k G, and pointAddress is the address of the key k.
    function testFuzz_curvePointsAndTheirAddresses(uint256 secret) public {
        VmWallets.Wallet memory point = vm.createWallet(secret % (N - 1) + 1);
        if (!harness.isOnCurve(point.publicKeyX, point.publicKeyY)) revert Unexpected("on curve", 0, 1);
        if (harness.isOnCurve(point.publicKeyX, point.publicKeyY ^ 1)) revert Unexpected("y ^ 1", 1, 0);
        address recovered = harness.pointAddress(point.publicKeyX, point.publicKeyY);
        if (recovered != point.addr) revert Unexpected("address", uint160(recovered), uint160(point.addr));
    }

    /// @dev Steps 3-7: another message, the other parity of P (-P) or another key is refused.
    function testFuzz_refusesAnotherMessageOrKey(bytes32 message, uint256 px, uint8 parity) public view {
        vm.assume(message != MESSAGE);
        expectVerdict(verdict(PX, PARITY, message, RX, RY, Z), FrostVerifier.Verdict.WrongCommitment, "message");
        expectVerdict(verdict(PX, 1 - PARITY, MESSAGE, RX, RY, Z), FrostVerifier.Verdict.WrongCommitment, "-P");
        px = px % (N - 1) + 1;
        parity = parity % 2;
        vm.assume(px != PX || parity != PARITY);
        expectVerdict(verdict(px, parity, MESSAGE, RX, RY, Z), FrostVerifier.Verdict.WrongCommitment, "key");
    }

    /// @dev A signature under one key never verifies under another, for fresh keys and messages.
    function testFuzz_refusesASchnorrSignatureUnderAnotherKey(uint256 secret, uint256 nonce, bytes32 message)
        public
    {
        (uint256 px, uint8 parity, uint256 rx, uint256 ry, uint256 z) = schnorr(secret, nonce, message);
        (uint256 otherX, uint8 otherParity,,,) = schnorr(secret ^ 1, nonce, message);
        vm.assume(otherX != px);
        expectVerdict(verdict(otherX, otherParity, message, rx, ry, z), FrostVerifier.Verdict.WrongCommitment, "P'");
        expectVerdict(verdict(px, 1 - parity, message, rx, ry, z), FrostVerifier.Verdict.WrongCommitment, "-P");
        expectVerdict(verdict(px, parity, message, rx, P - ry, z), FrostVerifier.Verdict.WrongCommitment, "-R");
    }

    /// @dev Random words are never a valid signature (a forgery would need z G - c P = R for a chosen R).
    function testFuzz_refusesRandomWords(uint256 rx, uint256 ry, uint256 z) public view {
        if (harness.verify(PX, PARITY, MESSAGE, rx, ry, z)) revert Unexpected("random words", 1, 0);
    }
}
