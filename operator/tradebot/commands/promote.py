"""`tradebot promote`: check a LiveBot's promotion gates against the cluster and the records,
and print the manifest change to commit. It never changes the cluster: in GitOps the change
goes through review, and the operator checks the same gates again when it is applied."""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
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
        "tightened to the operator-wide floors ($TRADEBOT_PROMOTION_FLOORS). It prints the "
        "bot's promotion digest (what a live approval names: spec.promotion.approval.digest) "
        "and how it differs from the approved one. When every "
        "gate passes, print the merge patch to commit to "
        "the bot's manifest in git; otherwise print why not and exit 1. Nothing is applied. "
        "A live bot is approved again (its change waits until then) with --to live and the "
        "changed manifest in --file.",
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
        "--file",
        "-f",
        metavar="MANIFEST",
        help="judge this LiveBot manifest (YAML or JSON; the change you are about to commit) "
        "instead of the bot's spec in the cluster",
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
    raw_spec = bot["spec"]
    if args.file:
        try:
            raw_spec = _manifest_spec(args.file, args.bot)
        except ValueError as e:
            return _fail(str(e), 2)
    try:
        spec = LiveBotSpec.model_validate(raw_spec)
    except ValidationError as e:
        return _fail(f"{what} has an invalid spec: {e.errors()[0]['msg']}")
    code_hash = _code_hash(namespace, spec.strategy_ref.name)
    approval = None
    fresh = None
    if args.approved_by:
        if code_hash is None:
            return _fail(
                f"Strategy {namespace}/{spec.strategy_ref.name} is not Ready: there "
                "is no introspected code to approve"
            )
        # The approval names the code it approves: a later code change voids it. Its digest
        # is added below, once the bot it approves is known.
        fresh = approval = Approval(
            approved_by=args.approved_by,
            reference=args.reference,
            approved_at=dt.datetime.now(dt.UTC).replace(microsecond=0),
            code_hash=code_hash,
        )
    elif spec.promotion is not None:
        approval = spec.promotion.approval
    try:
        if args.to == spec.mode == "live":
            # A live bot approved again: the approval is the whole change.
            if approval is None:
                raise ValueError("mode live needs an approval (approvedBy, approvedAt, reference)")
            patch: dict[str, Any] = {"spec": {"promotion": {"approval": approval.to_wire()}}}
        else:
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
    if args.to == "live":
        # What a live approval names; testnet and dry run need none.
        try:
            digest = _print_digest(namespace, bot, target)
        except ValueError as e:
            return _fail(str(e))
        if fresh is not None:
            approved = fresh.model_copy(update={"digest": digest})
            patch["spec"].setdefault("promotion", {})["approval"] = approved.to_wire()
        elif approval is not None and approval.digest != digest:
            return _fail(
                f"the manifest's approval is for digest {approval.digest or 'none'}, the bot "
                f"would be {digest}: approve it with --approved-by and --reference"
            )

    backtest = None
    bt = None
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
        bias=(found_bias := _bias(namespace, target, bt)),
        strategy_timeframe=_timeframe(namespace, target.strategy_ref.name),
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
    if found_bias is not None:
        for line in bias_lines(found_bias):
            print(line)
    if not gates.all_passed(results):
        return _fail("gates do not pass; nothing to commit yet")
    print(
        "\nEvery gate passes. Commit this change to the bot's manifest "
        "(e.g. `kubectl patch --type merge` in a review, or your kustomize overlay):\n"
    )
    if args.output == "json":
        print(json.dumps(patch, indent=2))
    else:
        print(yaml.safe_dump(patch, sort_keys=False), end="")
    return 0


def _manifest_spec(path: str, name: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"cannot read {path}: {e}") from e
    if not isinstance(doc, dict) or doc.get("kind") != "LiveBot" or "spec" not in doc:
        raise ValueError(f"{path} is not a LiveBot manifest")
    found = (doc.get("metadata") or {}).get("name")
    if found != name:
        raise ValueError(f"{path} is LiveBot {found}, not {name}")
    return dict(doc["spec"])


def _print_digest(namespace: str, bot: dict[str, Any], target: Any) -> str:
    """Print the promotion digest of `target` and how it differs from the approved one;
    return the digest."""
    from tradebot import kube
    from tradebot.api.base import GROUP, VERSION
    from tradebot.domain import bots, promotion_digest
    from tradebot.domain.bot_credentials import secret_fingerprint
    from tradebot.settings import Settings

    status = bot.get("status") or {}
    now = _inputs(status.get("promotionInputs")) or {}
    strategy = kube.read_or_none(
        kube.custom().get_namespaced_custom_object,
        GROUP,
        VERSION,
        namespace,
        "strategies",
        target.strategy_ref.name,
    )
    # The image the operator resolved for this bot, unless the manifest names one: the
    # operator's defaults are its settings, not this machine's.
    image = (
        target.image
        or (now.get("image") if not (bot["spec"].get("image")) else None)
        or bots.pod_image(target, Settings.from_env())
    )
    ref = target.exchange.credentials_secret_ref
    fingerprint = None
    if ref is not None:
        seen = now.get("credentials") or {}
        fingerprint = seen.get("fingerprint") if seen.get("secretName") == ref.name else None
        if fingerprint is None:
            try:
                secret = kube.core().read_namespaced_secret(ref.name, namespace)
            except ApiException as e:
                raise ValueError(
                    cluster_access.describe(e, f"Secret {namespace}/{ref.name}")
                    + ": its fingerprint is part of the digest"
                ) from e
            fingerprint = secret_fingerprint(
                {k: base64.b64decode(v or "") for k, v in (secret.data or {}).items()}
            )
    inputs = promotion_digest.promotion_inputs(
        target,
        promotion_digest.StrategyFacts.of(strategy),
        image=image,
        credentials_fingerprint=fingerprint,
    )
    digest = promotion_digest.promotion_digest(inputs)
    print(f"promotion digest: {digest}")
    approved_digest = ((bot["spec"].get("promotion") or {}).get("approval") or {}).get("digest")
    approved = _inputs(status.get("approvedInputs"))
    if approved_digest is None:
        print("  approved digest: none")
    elif approved_digest == digest:
        print(f"  approved digest: {approved_digest} (the same)")
    elif approved is not None and promotion_digest.promotion_digest(approved) == approved_digest:
        found = promotion_digest.differences(approved, inputs)
        names = ", ".join(f"{d.field}{' (safer)' if d.safer else ''}" for d in found)
        print(f"  approved digest: {approved_digest}; differs in: {names}")
    else:
        print(
            f"  approved digest: {approved_digest} (its inputs are not known: no pod of the "
            "bot has run it)"
        )
    return digest


def _inputs(text: object) -> dict[str, Any] | None:
    if not isinstance(text, str):
        return None
    try:
        found = json.loads(text)
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


def _bias(namespace: str, target: Any, evidence: dict[str, Any] | None) -> Any:
    """The Backtest holding the bias analyses of the evidence Backtest (None: no evidence)."""
    from tradebot import kube
    from tradebot.api.base import GROUP, VERSION
    from tradebot.domain import bias

    if target.promotion is None or evidence is None:
        return None
    name = bias.analysis_source(target.promotion.backtest_ref.name, evidence)
    found = (
        evidence
        if name == evidence["metadata"]["name"]
        else kube.read_or_none(
            kube.custom().get_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            "backtests",
            name,
        )
    )
    return bias.BiasEvidence.from_object(name, found)


def bias_lines(found: Any) -> list[str]:
    """The findings of the bias analyses, for a person deciding on the promotion."""
    findings = found.findings
    if not found.found:
        return [
            f"  bias analysis: Backtest {found.name} does not exist yet (the operator "
            "creates it when the bot asks for the promotion)"
        ]
    if findings is None:
        return [
            f"  bias analysis: Backtest {found.name} is {found.phase or 'not started'}, "
            "no findings yet"
        ]
    lines = [f"  bias analysis (Backtest {found.name}): {findings.summary}"]
    look = findings.lookahead
    if look is not None:
        if look.inconclusive:
            lines.append(f"    lookahead: inconclusive: {look.inconclusive}")
        else:
            lines.append(
                f"    lookahead: {'clean' if look.clean else 'BIASED'}; signals {look.signals}, "
                f"biased entry {look.biased_entry_signals}, biased exit "
                f"{look.biased_exit_signals}, biased indicators "
                f"{', '.join(look.biased_indicators or []) or 'none'}"
            )
    rec = findings.recursive
    if rec is not None:
        startups = ", ".join(str(c) for c in rec.startup_candles or ()) or "Freqtrade's"
        lines.append(
            f"    recursive ({rec.pair or 'first pair'}, startup candles {startups}): "
            f"max difference {rec.max_difference}"
        )
        for item in rec.indicators or ():
            lines.append(f"      {item.name}: {item.difference}")
    return lines


def _timeframe(namespace: str, strategy: str) -> str | None:
    from tradebot import kube
    from tradebot.api.base import GROUP, VERSION

    found = (
        kube.read_or_none(
            kube.custom().get_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            "strategies",
            strategy,
        )
        or {}
    )
    value = (found.get("spec") or {}).get("timeframe") or (
        (found.get("status") or {}).get("interface") or {}
    ).get("timeframe")
    return str(value) if value else None


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
