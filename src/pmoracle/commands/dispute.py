"""``pmoracle dispute``: check an attested round, scan a report archive for misbehaviour, submit slashing evidence,
prove an understated margin on chain.

Exit status: 0 when the attestation holds / nothing was found / the evidence slashed / the fraud was proven; 1 when
the attestation does not hold / misbehaviour was found / the contract refused the evidence / nothing could be
proven; 2 on bad input (a message names the field).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pmoracle.config.local import DEFAULT_PASSWORD_ENV

EXIT_OK, EXIT_FAILED = 0, 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``dispute`` sub-commands: check, scan, submit, prove."""
    sub = parser.add_subparsers(dest="dispute_command", required=True, metavar="ACTION")

    check = sub.add_parser(
        "check", help="recompute an attested round from the chain and compare it with the attestation",
        description="Recompute a round from chain state alone, rebuild the Merkle tree and compare it with the "
        "attested root. Exit 0 when the attestation holds, 1 when it does not, 2 on bad input.",
    )  # fmt: skip
    _add_chain_arguments(check, required=True)
    check.add_argument("--params", required=True, type=Path, help="the risk-params TOML of the committee")
    which = check.add_mutually_exclusive_group(required=True)
    which.add_argument("--round", type=int, metavar="B", help="the round's anchor block")
    which.add_argument("--latest", action="store_true", help="the latest attested round")
    source = check.add_mutually_exclusive_group()
    source.add_argument("--leaves", type=Path, metavar="FILE",
                        help="JSON of the attested leaves (list of /v1/margin objects, proofs optional)")  # fmt: skip
    source.add_argument(
        "--node-api", metavar="URL", help="fetch the attested leaves from a node's /v1/leaves/B (old nodes: /v1/margin)"
    )
    check.add_argument("--json", action="store_true", help="print the verdict as JSON")

    policy = sub.add_parser(
        "policy", help="recompute the adaptive policy's states at a round from the chain and compare a node's",
        description="Recompute every underlying's adaptive-policy state at anchor block B from the MarketFeeds "
        "IndexSet logs alone (docs/policy.md) and, with --node, compare it with the node's /v1/policy/B. Exit 0 "
        "when they agree (or without --node), 1 naming each underlying that differs, 2 on bad input.",
    )  # fmt: skip
    _add_chain_arguments(policy, required=True)
    policy.add_argument("--params", required=True, type=Path, help="the risk-params TOML of the committee")
    policy.add_argument("--round", required=True, type=int, metavar="B", help="the round's anchor block")
    policy.add_argument("--node", metavar="URL", help="the node API whose published policy to check")
    policy.add_argument("--json", action="store_true", help="print the verdict as JSON")

    scan = sub.add_parser(
        "scan", help="find equivocations and deviations in a node's signed-report archive and on chain",
        description="Look through a node's report archive (and the attested digests on chain) for equivocations and "
        "deviations. Exit 0 when none is found, 1 when some are, 2 on bad input.",
    )  # fmt: skip
    scan.add_argument("--archive", required=True, type=Path, metavar="DIR_OR_SQLITE",
                      help="the node's data directory or its archive.sqlite")  # fmt: skip
    _add_chain_arguments(scan, required=False)
    scan.add_argument("--out", type=Path, metavar="DIR", help="write one evidence JSON file per finding here")
    scan.add_argument("--json", action="store_true", help="print the findings as JSON")

    submit = sub.add_parser(
        "submit", help="post evidence to SolverRegistry and print the slash or the contract's refusal",
        description="Post an evidence file (from `dispute scan --out`) to SolverRegistry. Exit 0 when it slashed, "
        "1 when the contract refused it, 2 on bad input.",
    )  # fmt: skip
    submit.add_argument("evidence", type=Path, metavar="EVIDENCE.json")
    _add_chain_arguments(submit, required=True)
    submit.add_argument("--key-file", required=True, type=Path, metavar="KEYSTORE",
                        help="keystore of the account that pays gas and receives the reward")  # fmt: skip
    submit.add_argument("--password-file", type=Path, help="file whose first line is the keystore password")
    submit.add_argument("--password-env", default=DEFAULT_PASSWORD_ENV,
                        help=f"environment variable holding the password (default {DEFAULT_PASSWORD_ENV})")  # fmt: skip
    submit.add_argument("--json", action="store_true", help="print the outcome as JSON")

    prove = sub.add_parser(
        "prove", help="find an attested leaf that understates its MM, or a wrong option entry, by recomputation and "
        "prove it on chain",
        description="Recompute a round, find an attested leaf whose maintenance margin is below the recomputed one "
        "(its holdings at the round's block: an account changed since is provable too), and post "
        "MarginOracle.proveFraud: the round is invalidated and its signers slashed. When the attested risk arrays "
        "differ from the recomputed ones, the proof uses the attested rows (--rows, or the --node-api node's "
        "/v1/risk-arrays), and without one, the attested entry farthest from the recomputation is posted to "
        "MarginOracle.challengePricing. Without --key-file only print what was found. Exit 0 when proven (or a "
        "proof was found), 1 when nothing can be proven or the contract refused it, 2 on bad input.",
    )  # fmt: skip
    _add_chain_arguments(prove, required=True)
    prove.add_argument("--params", required=True, type=Path, help="the risk-params TOML of the committee")
    which = prove.add_mutually_exclusive_group(required=True)
    which.add_argument("--round", type=int, metavar="B", help="the round's anchor block")
    which.add_argument("--latest", action="store_true", help="the latest attested round")
    source = prove.add_mutually_exclusive_group(required=True)
    source.add_argument("--leaves", type=Path, metavar="FILE",
                        help="JSON of the attested leaves (with proofs, or the whole set)")  # fmt: skip
    source.add_argument("--node-api", metavar="URL",
                        help="fetch the attested leaves from a node's /v1/leaves/B (/v1/margin on older nodes) and, "
                        "without --rows, the attested risk-array rows from its /v1/risk-arrays/B")  # fmt: skip
    prove.add_argument("--rows", type=Path, metavar="FILE",
                       help="JSON of the attested risk-array rows, all of them (key, base, addon, values)")  # fmt: skip
    prove.add_argument("--key-file", type=Path, metavar="KEYSTORE",
                       help="keystore of the account that pays gas and receives the reward")  # fmt: skip
    prove.add_argument("--password-file", type=Path, help="file whose first line is the keystore password")
    prove.add_argument("--password-env", default=DEFAULT_PASSWORD_ENV,
                       help=f"environment variable holding the password (default {DEFAULT_PASSWORD_ENV})")  # fmt: skip
    prove.add_argument("--json", action="store_true", help="print the outcome as JSON")


def _add_chain_arguments(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument("--rpc", required=required, action="append", metavar="URL",
                        help="JSON-RPC endpoint (repeat for fallbacks)")  # fmt: skip
    parser.add_argument("--deployment", required=required, type=Path, help="the deployment JSON")


def run(args: argparse.Namespace) -> int:
    """Run one dispute action; return the exit status."""
    if args.dispute_command == "check":
        return _run_check(args)
    if args.dispute_command == "policy":
        return _run_policy(args)
    if args.dispute_command == "scan":
        return _run_scan(args)
    if args.dispute_command == "prove":
        return _run_prove(args)
    return _run_submit(args)


def _connect(args: argparse.Namespace) -> tuple[Any, Any]:
    from pmoracle.commands.chain_args import connect

    return connect(args.rpc, args.deployment)


# --- policy -------------------------------------------------------------------------------------------------------


def _run_policy(args: argparse.Namespace) -> int:
    from pmoracle.config.params import load_params_file
    from pmoracle.errors import InputError
    from pmoracle.node.policy import check_policy, fetch_node_policy

    if args.round <= 0:
        raise InputError("round", f"expected a positive block number, got {args.round}")
    params = load_params_file(args.params, "params")
    if params.policy is None:
        raise InputError("params", f"{args.params} has no [policy] section")
    client, deployment = _connect(args)
    published = None if args.node is None else fetch_node_policy(args.node, params, args.round)
    result = check_policy(client, deployment, params, args.round, published)
    if args.json:
        print(json.dumps(result.to_json(), indent=1))
    else:
        _print_policy(result)
    return EXIT_OK if result.holds else EXIT_FAILED


def _print_policy(result: Any) -> None:
    recomputed = result.recomputed
    print(f"round {recomputed.block_number}: policy hash 0x{recomputed.policy_hash.hex()} (recomputed from chain)")
    for state in recomputed.states:
        stress = "yes" if state.stressed else "no"
        shift = f"  vol shift {state.vol_shift / 1e9:.4%}" if state.vol_shift else ""  # [policy.vol] only
        print(f"  {state.underlying:<8} scan range {state.scan_range / 1e9:.4%}{shift}  stress {stress}  "
              f"samples {state.count}  state 0x{state.state_hash.hex()}")  # fmt: skip
    if result.published is None:
        return
    if result.holds:
        print("the node published the same states and hash: the policy holds")
        return

    def describe(state: Any) -> str:
        if state is None:
            return "absent"
        shift = f", vol shift {state.vol_shift}" if state.vol_shift else ""  # [policy.vol] only
        return f"range {state.scan_range}{shift}, state 0x{state.state_hash.hex()}"

    for d in result.differences:
        print(f"MISMATCH {d.underlying}: recomputed {describe(d.recomputed)}; "
              f"the node published {describe(d.published)}")  # fmt: skip
    if result.claimed_hash != recomputed.policy_hash:
        print(f"MISMATCH policy hash: the node claims 0x{result.claimed_hash.hex()}")


# --- check --------------------------------------------------------------------------------------------------------


def _run_check(args: argparse.Namespace) -> int:
    from pmoracle.config.params import load_params_file
    from pmoracle.errors import InputError
    from pmoracle.node import dispute

    if args.round is not None and args.round <= 0:
        raise InputError("round", f"expected a positive block number, got {args.round}")
    params = load_params_file(args.params, "params")
    claimed = _claimed_leaves(args)
    client, deployment = _connect(args)
    result = dispute.check_round(client, deployment, params, None if args.latest else args.round, claimed=claimed)
    if args.json:
        print(json.dumps(result.to_json(), indent=1))
    else:
        _print_check(result)
    return EXIT_OK if result.holds else EXIT_FAILED


def _claimed_leaves(args: argparse.Namespace) -> Any:
    """Return the source of attested leaves ``--leaves`` or ``--node-api`` names (None without either)."""
    from pmoracle.node import dispute

    if args.leaves is not None:
        from_file = dispute.load_leaves_file(args.leaves)
        return lambda attested, leaves: from_file
    if args.node_api is not None:
        url = args.node_api

        def claimed(attested: Any, leaves: Any) -> Any:
            return dispute.fetch_attested_leaves(url, [leaf.account for leaf in leaves], attested.block_number)

        return claimed
    return None


def _print_check(result: Any) -> None:
    from eth_utils import to_checksum_address

    a, r = result.attested, result.recomputed
    verdict = "HOLDS" if result.holds else "DOES NOT HOLD"
    print(f"round {a.block_number}: the attestation {verdict}")
    print(f"  attested   root 0x{a.accounts_root.hex()}  digest 0x{a.report_digest.hex()}  accounts {a.account_count}")
    print(f"  recomputed root 0x{r.accounts_root.hex()}  digest 0x{result.recomputed_digest.hex()}  "
          f"accounts {r.account_count}")  # fmt: skip
    if result.root_matches and not result.digest_matches:
        print("  the roots agree but the reports differ (block hash, params hash or account count)")
    if result.claimed_count is None:
        print(f"  recomputed leaves ({len(result.leaves)}; USD with 18 decimals; give --leaves or --node-api to "
              "compare account by account):")  # fmt: skip
        print(f"    {'account':42}  {'initialMargin':>28}  {'maintenanceMargin':>28}  {'equity':>28}")
        for leaf in result.leaves:
            print(f"    {to_checksum_address(leaf.account)}  {leaf.initial_margin:>28}  {leaf.maintenance_margin:>28}  "
                  f"{leaf.equity:>28}")  # fmt: skip
        return
    print(f"  {len(result.differences)} accounts differ of {result.claimed_count} attested leaves compared "
          "(USD with 18 decimals):")  # fmt: skip
    for d in result.differences:
        proven = "" if d.verified else "  (attested leaf NOT proven against the attested root)"
        print(f"    {to_checksum_address(d.account)}{proven}")
        if d.recomputed is None or d.attested is None:
            side = "the recomputation" if d.recomputed is None else "the attestation"
            print(f"      absent from {side}")
            continue
        for name, mine, theirs in (
            ("initialMargin", d.recomputed.initial_margin, d.attested.initial_margin),
            ("maintenanceMargin", d.recomputed.maintenance_margin, d.attested.maintenance_margin),
            ("equity", d.recomputed.equity, d.attested.equity),
        ):
            if mine != theirs:
                print(f"      {name:18} recomputed {mine}  attested {theirs}")
    if result.unproven:
        print(f"  {len(result.unproven)} attested leaves given do not verify against the attested root")


# --- scan ---------------------------------------------------------------------------------------------------------


def _run_scan(args: argparse.Namespace) -> int:
    from eth_utils import to_checksum_address

    from pmoracle.consensus.evidence import Equivocation, encode_evidence
    from pmoracle.consensus.report import Domain, compute_report_digest
    from pmoracle.errors import InputError
    from pmoracle.node import dispute

    if args.rpc and args.deployment is None:
        raise InputError("deployment", "--rpc needs --deployment")
    domain = committee = attested = None
    if args.deployment is not None and args.rpc:
        from pmoracle.node.daemon import read_committee

        client, deployment = _connect(args)
        domain = Domain.from_address(deployment.chain_id, deployment.contracts["MarginOracle"])
        committee = read_committee(client, deployment)

        def attested(block: int) -> Any:
            return dispute.read_attested_digest(client, deployment, block)

    elif args.deployment is not None:
        from pmoracle.commands.chain_args import load_deployment

        deployment = load_deployment(args.deployment)
        domain = Domain.from_address(deployment.chain_id, deployment.contracts["MarginOracle"])
    archive = dispute.open_archive(args.archive)
    try:
        found = dispute.find_evidence(archive, domain=domain, committee=committee, attested_digest=attested)
    finally:
        archive.close()
    written: list[Path] = []
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        for evidence in found:
            path = args.out / dispute.evidence_file_name(evidence, domain)
            path.write_text(json.dumps(encode_evidence(evidence), indent=1) + "\n")
            written.append(path)
    if args.json:
        print(json.dumps({"findings": [encode_evidence(e) for e in found], "files": [str(p) for p in written]},
                         indent=1))  # fmt: skip
        return EXIT_FAILED if found else EXIT_OK
    if attested is None:
        print("no chain given (--rpc, --deployment): equivocations only, signatures not checked against the committee")
    print(f"{len(found)} findings in {args.archive}")
    for i, evidence in enumerate(found):
        signer = to_checksum_address(dispute.evidence_signer(evidence))
        config_digest, block = dispute.evidence_round(evidence)
        if isinstance(evidence, Equivocation):
            print(
                f"  equivocation: {signer} signed two reports for round {block} (config 0x{config_digest.hex()[:16]})"
            )
            for label, signed in (("a", evidence.a), ("b", evidence.b)):
                digest = "0x" + compute_report_digest(domain, signed.report).hex() if domain else "?"
                print(f"    {label}: digest {digest}  root 0x{signed.report.accounts_root.hex()}  "
                      f"signature 0x{signed.signature.hex()}")  # fmt: skip
        else:
            signed = evidence.signed
            digest = "0x" + compute_report_digest(domain, signed.report).hex() if domain else "?"
            print(f"  deviation: {signer} signed round {block} (config 0x{config_digest.hex()[:16]}) with digest "
                  f"{digest}, attested 0x{evidence.attested_digest.hex()}")  # fmt: skip
            print(f"    root 0x{signed.report.accounts_root.hex()}  signature 0x{signed.signature.hex()}")
        if written:
            print(f"    evidence: {written[i]}")
    return EXIT_FAILED if found else EXIT_OK


# --- submit -------------------------------------------------------------------------------------------------------


def _run_submit(args: argparse.Namespace) -> int:
    from pmoracle.chain.errors import ContractError
    from pmoracle.chain.transmitter import Transmitter
    from pmoracle.consensus.evidence import decode_evidence
    from pmoracle.files import read_json
    from pmoracle.node import dispute
    from pmoracle.node.keys import KeyFileError, KeyKind, read_password, unlock_key_file

    evidence = decode_evidence(read_json(args.evidence, "evidence"))
    password = read_password(args.password_file, args.password_env)
    key = unlock_key_file(args.key_file, password)
    if key.info.kind is KeyKind.P2P:
        raise KeyFileError(args.key_file, "holds a p2p identity key, expected an Ethereum account key")
    client, deployment = _connect(args)
    transmitter = Transmitter(client, key.secret)
    try:
        outcome = dispute.submit_evidence(transmitter, deployment, evidence)
    except ContractError as exc:
        if args.json:
            print(json.dumps({"slashed": False, "error": exc.name, "args": [_jsonable(a) for a in exc.error_args]}))
        else:
            print(f"refused by the contract: {exc.name}({', '.join(str(_jsonable(a)) for a in exc.error_args)})")
            if exc.name == "DeviationWindowNotOpen":
                import datetime

                block, attested_at, opens_at = exc.error_args
                opens = datetime.datetime.fromtimestamp(int(opens_at), datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")
                print(f"round {block} was attested at chain time {attested_at}; deviation evidence against it is "
                      f"accepted from {opens_at} ({opens} UTC), unless a fraud proof invalidates the round first: "
                      "submit again then")  # fmt: skip
        return EXIT_FAILED
    if args.json:
        print(json.dumps(outcome.to_json(), indent=1))
    else:
        from eth_utils import to_checksum_address

        who, reporter = to_checksum_address(outcome.signer), to_checksum_address(outcome.reporter)
        print(f"slashed {who} for {outcome.offence} in round {outcome.block_number}: {outcome.amount} wei of stake "
              f"taken, reward {outcome.reward} wei to {reporter} (tx 0x{outcome.tx_hash.hex()}, "
              f"gas {outcome.gas_used})")  # fmt: skip
    return EXIT_OK


# --- prove --------------------------------------------------------------------------------------------------------


def _run_prove(args: argparse.Namespace) -> int:
    from eth_utils import to_checksum_address

    from pmoracle.config.params import load_params_file
    from pmoracle.errors import InputError
    from pmoracle.node import dispute
    from pmoracle.node.keys import KeyFileError, KeyKind, read_password, unlock_key_file

    if args.round is not None and args.round <= 0:
        raise InputError("round", f"expected a positive block number, got {args.round}")
    params = load_params_file(args.params, "params")
    key = None
    if args.key_file is not None:
        key = unlock_key_file(args.key_file, read_password(args.password_file, args.password_env))
        if key.info.kind is KeyKind.P2P:
            raise KeyFileError(args.key_file, "holds a p2p identity key, expected an Ethereum account key")
    client, deployment = _connect(args)
    found = dispute.find_fraud_proof(client, deployment, params, None if args.latest else args.round,
                                     _claimed_leaves(args), _claimed_rows(args))  # fmt: skip
    block = found.attested.block_number
    summary: dict[str, Any] = {
        "round": block,
        "understated": [to_checksum_address(a) for a in found.understated],
        "changedSinceRound": [to_checksum_address(a) for a in found.changed],
        "riskArraysMatch": found.rows_match,
        "riskArraysSource": found.rows_source,
        "proven": False,
    }
    proof = found.proof
    if proof is None and found.challenge is not None:
        return _run_pricing_challenge(args, found, summary, client, deployment, key)
    if proof is None:
        no_rows = not found.rows_match and found.rows_source is None
        why = ("no attested leaf understates its MM" if not found.understated else
               "the attested risk arrays differ from the recomputation (give them with --rows, or --node-api of a "
               "node that keeps the round, for a pricing challenge)" if no_rows else
               "the attested risk arrays differ from the recomputation and no option entry is provably wrong"
               if not found.rows_match else
               "no understated leaf is below the rule's bound from the attested rows")  # fmt: skip
        print(json.dumps(summary | {"error": why}) if args.json else f"round {block}: nothing to prove: {why}")
        return EXIT_FAILED
    account = to_checksum_address(proof.leaf.account)
    summary |= {"account": account, "scenario": proof.scenario, "attestedMaintenanceMargin": str(
        proof.leaf.maintenance_margin), "requiredMaintenanceMargin": str(proof.required)}  # fmt: skip
    if not args.json:
        print(f"round {block}: {account} attested MM {proof.leaf.maintenance_margin}, the rule requires at least "
              f"{proof.required} in scenario {proof.scenario} ({len(proof.rows)} rows)")  # fmt: skip
    return _submit(args, summary, lambda tx: dispute.submit_fraud_proof(tx, deployment, found.report, proof), client,
                   key)  # fmt: skip


def _claimed_rows(args: argparse.Namespace) -> Any:
    """Return the source of attested risk-array rows: ``--rows``, else the ``--node-api`` node's
    /v1/risk-arrays/B (None without either)."""
    from pmoracle.node import dispute

    if args.rows is not None:
        from_file = dispute.load_rows_file(args.rows)
        return lambda attested: from_file
    if args.node_api is not None:
        url = args.node_api
        return lambda attested: dispute.fetch_node_rows(url, attested.block_number)
    return None


def _run_pricing_challenge(
    args: argparse.Namespace, found: Any, summary: dict[str, Any], client: Any, deployment: Any, key: Any
) -> int:
    """Print the wrong option entry ``found`` holds and, with a key, post its pricing challenge."""
    from pmoracle.node import dispute

    challenge = found.challenge
    attested_entry = challenge.row.values[challenge.scenario]
    summary |= {"challenge": {"instrumentId": challenge.row.key, "scenario": challenge.scenario,
                              "attestedEntry": attested_entry, "recomputedEntry": found.recomputed_entry}}  # fmt: skip
    if not args.json:
        print(f"round {found.attested.block_number}: instrument {challenge.row.key} entry {challenge.scenario} is "
              f"{attested_entry} attested, {found.recomputed_entry} recomputed (1e-4 USD per unit)")  # fmt: skip
    return _submit(args, summary,
                   lambda tx: dispute.submit_pricing_challenge(tx, deployment, found.report, challenge), client,
                   key)  # fmt: skip


def _submit(args: argparse.Namespace, summary: dict[str, Any], send: Any, client: Any, key: Any) -> int:
    """Send a proof with ``send(transmitter)`` and print the slashes or the contract's refusal; without a key, only
    print the summary (exit 0: something was found)."""
    from eth_utils import to_checksum_address

    from pmoracle.chain.errors import ContractError
    from pmoracle.chain.transmitter import Transmitter

    if key is None:
        if args.json:
            print(json.dumps(summary, indent=1))
        return EXIT_OK
    try:
        outcomes = send(Transmitter(client, key.secret))
    except ContractError as exc:
        error = {"error": exc.name, "args": [_jsonable(a) for a in exc.error_args]}
        if args.json:
            print(json.dumps(summary | error))
        else:
            print(f"refused by the contract: {exc.name}({', '.join(str(_jsonable(a)) for a in exc.error_args)})")
        return EXIT_FAILED
    summary |= {"proven": True, "slashed": [o.to_json() for o in outcomes]}
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        print(f"round {summary['round']} invalidated; {len(outcomes)} signers slashed:")
        for o in outcomes:
            print(f"  {to_checksum_address(o.signer)}: {o.amount} wei, reward {o.reward} wei")
    return EXIT_OK


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, str) and len(value) == 42 and value.startswith("0x"):
        from eth_utils import is_hex_address, to_checksum_address

        return to_checksum_address(value) if is_hex_address(value) else value
    if isinstance(value, int | str | bool) or value is None:
        return value
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    return str(value)
