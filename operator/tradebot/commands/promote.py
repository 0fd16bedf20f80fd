"""`tradebot promote`: check a LiveBot's promotion gates against the cluster and the records,
and print the manifest change to commit. It never changes the cluster: in GitOps the change
goes through review, and the operator checks the same gates again when it is applied."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Any

import yaml
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from tradebot.commands import cluster_access


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "promote",
        help="check a bot's promotion gates and print the manifest change",
        description="Evaluate the promotion gates of LiveBot BOT for mode --to, as the "
        "operator would: the referenced Backtest (Succeeded, same code hash, profit, drawdown, "
        "trades), the referenced Hyperopt's out-of-sample profit for the parameter set the "
        "Strategy runs (promotion.hyperoptRef), the recorded dry-run history of the same "
        "code without a breaker trip, and "
        "(for live) an approval of the Strategy's current code hash, with the thresholds "
        "tightened to the operator-wide floors ($TRADEBOT_PROMOTION_FLOORS). When every "
        "gate passes, print the merge patch to commit to "
        "the bot's manifest in git; otherwise print why not and exit 1. Nothing is applied.",
    )
    parser.add_argument("bot", help="the LiveBot")
    parser.add_argument(
        "--to", required=True, choices=["dryRun", "testnet", "live"], help="the mode to promote to"
    )
    parser.add_argument(
        "--approved-by",
        metavar="WHO",
        help="who approves (with --reference; live needs an approval, from "
        "these options or already in the manifest)",
    )
    parser.add_argument(
        "--reference", metavar="REF", help="the review behind the approval, e.g. a PR URL or commit"
    )
    parser.add_argument(
        "--credentials-secret",
        metavar="SECRET",
        help="the Secret with the exchange keys, added to the patch (testnet "
        "and live need one; omit it when the manifest names it already)",
    )
    parser.add_argument(
        "--dsn",
        default=None,
        help="records database with the dry-run history (default: "
        "$TRADEBOT_DATABASE_DSN, else the operator's local default)",
    )
    parser.add_argument(
        "--output",
        "-o",
        choices=["yaml", "json"],
        default="yaml",
        help="format of the patch (default: %(default)s)",
    )
    cluster_access.add_options(parser)
    parser.set_defaults(handler=_promote)


def _fail(message: str, code: int = 1) -> int:
    print(f"tradebot promote: {message}", file=sys.stderr)
    return code


def _promote(args: argparse.Namespace) -> int:
    from tradebot import kube
    from tradebot.api.base import GROUP, VERSION
    from tradebot.api.livebot import Approval, LiveBotSpec
    from tradebot.domain import gates, images
    from tradebot.settings import Settings

    if bool(args.approved_by) != bool(args.reference):
        return _fail("--approved-by and --reference go together", 2)
    namespace = cluster_access.connect(args)
    custom = kube.custom()
    what = f"LiveBot {namespace}/{args.bot}"
    try:
        bot = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "livebots", args.bot)
    except ApiException as e:
        return _fail(cluster_access.describe(e, what))
    try:
        spec = LiveBotSpec.model_validate(bot["spec"])
    except ValidationError as e:
        return _fail(f"{what} has an invalid spec: {e.errors()[0]['msg']}")
    code_hash = _code_hash(namespace, spec.strategy_ref.name)
    approval = None
    if args.approved_by:
        if code_hash is None:
            return _fail(
                f"Strategy {namespace}/{spec.strategy_ref.name} is not Ready: there "
                "is no introspected code to approve"
            )
        # The approval names the code it approves: a later code change voids it.
        approval = Approval(
            approved_by=args.approved_by,
            reference=args.reference,
            approved_at=dt.datetime.now(dt.UTC).replace(microsecond=0),
            code_hash=code_hash,
        )
    elif spec.promotion is not None:
        approval = spec.promotion.approval
    try:
        patch = gates.promotion_patch(spec, args.to, approval)
    except ValueError as e:
        return _fail(str(e))
    if args.credentials_secret:
        patch["spec"]["exchange"] = {"credentialsSecretRef": {"name": args.credentials_secret}}
    try:
        target = LiveBotSpec.model_validate(_merge(spec.to_wire(), patch["spec"]))
    except ValidationError as e:
        problems = "; ".join(str(err["msg"]).removeprefix("Value error, ") for err in e.errors())
        return _fail(
            f"{what} in mode {args.to} would be invalid: {problems} (pass "
            "--credentials-secret, or change the manifest first)"
        )

    backtest = None
    if target.promotion is not None:
        ref = target.promotion.backtest_ref.name
        try:
            bt = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "backtests", ref)
            backtest = gates.BacktestEvidence.from_object(ref, bt)
        except ApiException as e:
            if e.status != 404:
                return _fail(cluster_access.describe(e, f"Backtest {namespace}/{ref}"))
    dry_run, unreadable = _dry_run(args, namespace, bot, code_hash, target)
    settings = Settings.from_env()
    floors = settings.promotion_floors
    hyperopt, parameters = _out_of_sample(namespace, target)
    strategy = kube.read_or_none(
        custom.get_namespaced_custom_object,
        GROUP,
        VERSION,
        namespace,
        "strategies",
        target.strategy_ref.name,
    )
    results = gates.evaluate_gates(
        target,
        strategy_code_hash=code_hash,
        backtest=backtest,
        dry_run=dry_run,
        now=dt.datetime.now(dt.UTC),
        floor=floors.for_mode(args.to),
        hyperopt=hyperopt,
        strategy_parameters_hash=parameters,
        bot=gates.bot_run(target, strategy, parameters, images.allowed(settings)),
    )
    if unreadable:
        results = [
            gates.GateResult(g.name, False, unreadable) if g.name == gates.GATE_DRY_RUN else g
            for g in results
        ]
    print(f"{what}: {spec.mode} -> {args.to} (strategy code {(code_hash or 'none')[:12]})")
    for g in results:
        print(f"  [{'pass' if g.passed else 'FAIL'}] {g.name}: {g.message}")
    if not gates.all_passed(results):
        return _fail("gates do not pass; nothing to commit yet")
    print(
        "\nEvery gate passes. Commit this change to the bot's manifest "
        "(e.g. `kubectl patch --type merge` in a review, or your kustomize overlay):\n"
    )
    if args.output == "json":
        import json

        print(json.dumps(patch, indent=2))
    else:
        print(yaml.safe_dump(patch, sort_keys=False), end="")
    return 0


def _merge(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _out_of_sample(namespace: str, target: Any) -> tuple[Any, str | None]:
    """The Hyperopt promotion.hyperoptRef names (as gate evidence) and the parameters hash
    of the bot's Strategy: what the out-of-sample gate compares."""
    from tradebot import kube
    from tradebot.api.base import GROUP, VERSION
    from tradebot.domain.gates import HyperoptEvidence

    custom = kube.custom()
    strategy = (
        kube.read_or_none(
            custom.get_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            "strategies",
            target.strategy_ref.name,
        )
        or {}
    )
    parameters = (strategy.get("status") or {}).get("parametersHash")
    ref = target.promotion.hyperopt_ref if target.promotion is not None else None
    if ref is None:
        return None, parameters
    found = kube.read_or_none(
        custom.get_namespaced_custom_object, GROUP, VERSION, namespace, "hyperopts", ref.name
    )
    return HyperoptEvidence.from_object(ref.name, found), parameters


def _code_hash(namespace: str, strategy: str) -> str | None:
    from tradebot import kube
    from tradebot.api.base import GROUP, VERSION

    try:
        found = kube.custom().get_namespaced_custom_object(
            GROUP, VERSION, namespace, "strategies", strategy
        )
    except ApiException:
        return None
    status = found.get("status") or {}
    return (
        str(status["codeHash"])
        if status.get("phase") == "Ready" and status.get("codeHash")
        else None
    )


def _dry_run(
    args: argparse.Namespace,
    namespace: str,
    bot: dict[str, Any],
    code_hash: str | None,
    target: Any,
) -> tuple[Any, str | None]:
    from tradebot.commands.common import missing_database, resolve_dsn
    from tradebot.controllers.bot_records import EvidenceUnavailable, dry_run_evidence
    from tradebot.domain.gates import DryRunEvidence
    from tradebot.records import RecordsUnavailable, open_store, redact_dsn
    from tradebot.settings import Settings

    if code_hash is None or target.promotion is None or target.promotion.min_dry_run_hours == 0:
        return DryRunEvidence(), None
    settings = Settings.from_env()
    dsn = resolve_dsn(args.dsn)
    missing = missing_database(dsn)
    if missing is not None:
        return DryRunEvidence(), f"dry-run history cannot be read: {missing}"
    try:
        with open_store(dsn) as store:
            return dry_run_evidence(
                namespace,
                bot["metadata"]["name"],
                bot["metadata"]["uid"],
                code_hash,
                store=store,
                interval_seconds=settings.snapshot_interval_seconds,
            ), None
    except (RecordsUnavailable, EvidenceUnavailable) as e:
        return DryRunEvidence(), (f"dry-run history cannot be read from {redact_dsn(dsn)}: {e}")
