"""`tradebot hyperopt params NAME`: the best parameter set a Hyperopt found, exactly as
Freqtrade exported it, ready to drop beside the strategy file as `<StrategyClass>.json`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from tradebot.commands import cluster_access

if TYPE_CHECKING:
    from tradebot.api.hyperopt import HyperoptStatus


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "hyperopt",
        help="read a Hyperopt's results",
        description="Read what a Hyperopt found. `params NAME` prints its best parameter set.",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    params = actions.add_parser(
        "params",
        help="print the best parameter set of a Succeeded Hyperopt",
        description="Print status.best.parameters of Hyperopt NAME: Freqtrade's strategy "
        "parameter JSON, byte for byte as `freqtrade hyperopt` exported it. Saved as "
        "`<StrategyClass>.json` beside the strategy file, Freqtrade loads it; a Strategy can "
        "also take it straight from the Hyperopt (spec.parametersFrom.hyperoptRef). Only a "
        "Succeeded Hyperopt's set is printed (its out-of-sample check is done) unless "
        "--unvalidated; otherwise exit 1 saying where the Hyperopt is.",
    )
    params.add_argument("name", metavar="NAME", help="the Hyperopt")
    params.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="FILE",
        help="write the parameters to FILE instead of standard output",
    )
    params.add_argument(
        "--unvalidated",
        action="store_true",
        help="also print the best set of a search that finished but whose "
        "out-of-sample check is still running or failed (phase Validating "
        "or Failed)",
    )
    cluster_access.add_options(params)
    params.set_defaults(handler=_params)


def _fail(message: str, code: int = 1) -> int:
    print(f"tradebot hyperopt params: {message}", file=sys.stderr)
    return code


def _params(args: argparse.Namespace) -> int:
    from tradebot import kube
    from tradebot.api.base import GROUP, VERSION
    from tradebot.api.hyperopt import HyperoptStatus

    if args.output is not None and not args.output.parent.is_dir():
        return _fail(
            f"cannot write {args.output}: directory {args.output.parent} does not exist", 2
        )
    namespace = cluster_access.connect(args)
    what = f"Hyperopt {namespace}/{args.name}"
    try:
        obj = kube.custom().get_namespaced_custom_object(
            GROUP, VERSION, namespace, "hyperopts", args.name
        )
    except ApiException as e:
        return _fail(cluster_access.describe(e, what))
    try:
        status = HyperoptStatus.model_validate(obj.get("status") or {})
    except ValidationError as e:
        return _fail(f"{what} has a status this command cannot read: {e.errors()[0]['msg']}")
    problem = _not_ready(status, args.unvalidated)
    if problem is not None:
        return _fail(f"{what} {problem}")
    assert status.best is not None  # _not_ready checked it
    text = status.best.parameters
    if args.output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        args.output.write_text(text)
        print(
            f"wrote {args.output} (parameters {status.best.parameters_hash[:12]}, "
            f"epoch {status.best.epoch})",
            file=sys.stderr,
        )
    return 0


def _not_ready(status: HyperoptStatus, unvalidated: bool) -> str | None:
    """Why the Hyperopt's best set is not to be printed, or None."""
    phase = status.phase or "Pending"
    progress = f" ({status.progress} epochs)" if status.progress else ""
    allowed = {"Succeeded", "Validating", "Failed"} if unvalidated else {"Succeeded"}
    if phase not in allowed:
        if phase == "Validating":
            return (
                "has finished its search but its out-of-sample check is still running; "
                "wait for Succeeded, or pass --unvalidated"
            )
        if phase == "Failed":
            reason = f": {status.message}" if status.message else ""
            return f"has Failed{reason}; pass --unvalidated to print the best set it found anyway"
        return f"has not finished: phase {phase}{progress}"
    if status.best is None:
        return f"is {phase} but recorded no best parameter set (no epoch finished)"
    return None
