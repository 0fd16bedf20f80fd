"""The `tradebot` command."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from tradebot import __version__

DEFAULT_ROOT = Path(".local")

# Subcommands in modules of their own (see tradebot.commands): each adds its parser through
# register(sub) and sets `handler`.
COMMAND_MODULES: tuple[str, ...] = (
    "tradebot.commands.artifacts",
    "tradebot.commands.breaker",
    "tradebot.commands.db",
    "tradebot.commands.hyperopt",
    "tradebot.commands.promote",
    "tradebot.commands.records",
    "tradebot.commands.registry",
    "tradebot.commands.report",
    "tradebot.commands.ui",
)


def _cluster(args: argparse.Namespace) -> int:
    from tradebot.localcluster import ClusterError, LocalCluster

    if args.bin_dir is None:
        print(
            "tradebot cluster: no tool directory; pass --bin-dir or set "
            "TRADEBOT_TOOLS_BIN (the Makefile does: run `make up`)",
            file=sys.stderr,
        )
        return 2
    cluster = LocalCluster(args.root, Path(args.bin_dir), out=print)
    if args.action == "up":
        try:
            cluster.up(timeout=args.timeout)
        except ClusterError as e:
            print(f"tradebot cluster up: {e}", file=sys.stderr)
            return 1
        kubeconfig = cluster.kubeconfig
        print(
            f"\nUse it:\n  export KUBECONFIG={kubeconfig}\n  kubectl get nodes\n"
            f"Component logs: {cluster.layout.logs}/<component>.log\n"
            "Stop it and remove its state: make down"
        )
        return 0
    if args.action == "down":
        stopped = cluster.down()
        print(
            f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}; "
            f"removed {cluster.layout.root}"
        )
        return 0
    running = cluster.running()
    for component, pid in running.items():
        print(f"{component:<24} {'running, pid ' + str(pid) if pid else 'stopped'}")
    return 0 if all(running.values()) else 3


def _crds(args: argparse.Namespace) -> int:
    import difflib

    from tradebot.api.crdgen import render_all

    files = render_all()
    if args.check is not None:
        directory: Path = args.check
        drift = []
        on_disk = {p.name for p in directory.glob("tradebot.dev_*.yaml")}
        for stale in sorted(on_disk - files.keys()):
            drift.append(f"{directory / stale}: not generated any more (remove it)\n")
        for name, content in files.items():
            path = directory / name
            current = path.read_text() if path.exists() else ""
            if current != content:
                drift.extend(
                    difflib.unified_diff(
                        current.splitlines(keepends=True),
                        content.splitlines(keepends=True),
                        str(path),
                        f"{name} (generated)",
                    )
                )
        if drift:
            sys.stdout.writelines(drift)
            print(
                f"\n{directory} is stale: run `tradebot crds --output-dir {directory}`",
                file=sys.stderr,
            )
            return 1
        print(f"{directory} is up to date ({len(files)} CRDs)")
        return 0
    if args.output_dir is not None:
        out: Path = args.output_dir
        out.mkdir(parents=True, exist_ok=True)
        for old in out.glob("tradebot.dev_*.yaml"):
            if old.name not in files:
                old.unlink()
        for name, content in files.items():
            (out / name).write_text(content)
        print(f"wrote {len(files)} CRDs to {out}")
        return 0
    sys.stdout.write("".join(files.values()))
    return 0


def _api_docs(args: argparse.Namespace) -> int:
    from tradebot.api.docs import render

    text = render()
    if args.check is not None:
        current = args.check.read_text() if args.check.exists() else ""
        if current != text:
            print(
                f"{args.check} is stale: run `tradebot api-docs -o {args.check}`", file=sys.stderr
            )
            return 1
        print(f"{args.check} is up to date")
        return 0
    if args.output is not None:
        args.output.write_text(text)
        print(f"wrote {args.output}")
        return 0
    sys.stdout.write(text)
    return 0


def _operator(args: argparse.Namespace) -> int:
    import kopf

    from tradebot.controllers import runtime
    from tradebot.settings import Settings

    overrides = {
        k: v
        for k, v in {
            "executor": args.executor,
            "namespaces": args.namespace or None,
            "max_concurrent_backtests": args.max_concurrent,
        }.items()
        if v is not None
    }
    settings = Settings.from_env().model_copy(update=overrides)
    runtime.install(runtime.Runtime(settings))
    import tradebot.controllers  # noqa: F401 - registers the handlers

    elector = None
    if settings.leader_election:  # a standby: nothing of kopf's starts before this returns
        from tradebot.controllers.leadership import wait_to_lead

        elector = wait_to_lead(settings, args.liveness)
    try:
        kopf.run(
            standalone=True,
            clusterwide=not settings.namespaces,
            namespaces=list(settings.namespaces),
            liveness_endpoint=args.liveness,
        )
    finally:
        if elector is not None:
            from tradebot.controllers.leadership import step_down

            # kopf's cleanup (controllers/lifecycle.py) has stopped the operator's pools and
            # waited, bounded, for their running work; kopf's own handler threads are waited
            # for here, within the same bound. The Lease goes only after all of it ended.
            rt = runtime.get()
            stopped = rt.stop_handlers(rt.settings.shutdown_grace_seconds)
            step_down(elector, rt.stopped_in_time and stopped)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tradebot",
        description="Tradebot Operator: run Freqtrade strategies, backtests and bots on "
        "Kubernetes, with promotion gates and circuit breakers.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    sub.add_parser("version", help="print the operator's version")

    crds = sub.add_parser(
        "crds",
        help="print, write or check the CustomResourceDefinitions",
        description="Generate the CRDs of the seven kinds (Strategy, Backtest, Hyperopt, "
        "MarketData, LiveBot, CircuitBreaker, DcaSchedule) from the pydantic models in "
        "tradebot.api. Without options, print them all as one YAML stream (the same "
        "bytes as `cat crds/*.yaml`).",
    )
    where = crds.add_mutually_exclusive_group()
    where.add_argument(
        "--output-dir",
        "-o",
        type=Path,
        metavar="DIR",
        help="write one file per kind into DIR (e.g. crds/)",
    )
    where.add_argument(
        "--check",
        type=Path,
        metavar="DIR",
        help="exit 1 and print a diff when DIR differs from the generated CRDs",
    )

    op = sub.add_parser(
        "operator",
        help="run the operator (reconciles all seven kinds: Strategy, Backtest, Hyperopt, "
        "MarketData, LiveBot, CircuitBreaker, DcaSchedule)",
        description="Run the operator against the cluster of the current kubeconfig (or "
        "in-cluster). Settings come from TRADEBOT_* environment variables (see "
        "docs/operations.md); the options below override them.",
    )
    op.add_argument(
        "--namespace",
        "-n",
        action="append",
        metavar="NS",
        help="watch only this namespace (repeatable; default: all)",
    )
    op.add_argument(
        "--executor",
        choices=["kubernetes", "local"],
        help="kubernetes: Jobs run the runner image; local: the operator runs the "
        "runner itself for pods on kwok nodes (the local cluster)",
    )
    op.add_argument(
        "--max-concurrent", type=int, metavar="N", help="cluster-wide limit of running backtests"
    )
    op.add_argument(
        "--liveness",
        metavar="URL",
        help="serve a health endpoint, e.g. http://0.0.0.0:8080/healthz",
    )

    api_docs = sub.add_parser(
        "api-docs",
        help="print, write or check the API reference (docs/api.md)",
        description="Render the reference of every field of the kinds (type, default, "
        "rules, description) from the same models as the CRDs.",
    )
    target = api_docs.add_mutually_exclusive_group()
    target.add_argument("--output", "-o", type=Path, metavar="FILE", help="write to FILE")
    target.add_argument(
        "--check",
        type=Path,
        metavar="FILE",
        help="exit 1 when FILE differs from the rendered reference",
    )

    cluster = sub.add_parser(
        "cluster",
        help="the local development cluster (etcd, control plane, kwok fake nodes)",
        description="Manage the local development cluster built from the binaries of "
        "`make tools`: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok "
        "with 2 CPU, 2 ROCm GPU and 1 NVIDIA fake node. State lives under --root.",
    )
    cluster.add_argument(
        "action",
        choices=["up", "down", "status"],
        help="up: start (idempotent) and wait until ready; down: stop every process and "
        "remove the state; status: which components run (exit 3 if any is stopped)",
    )
    cluster.add_argument(
        "--root", type=Path, default=DEFAULT_ROOT, help="state directory (default: %(default)s)"
    )
    cluster.add_argument(
        "--bin-dir",
        default=os.environ.get("TRADEBOT_TOOLS_BIN"),
        help="directory of the tool binaries (default: $TRADEBOT_TOOLS_BIN)",
    )
    cluster.add_argument(
        "--timeout",
        type=float,
        default=90.0,
        help="seconds to wait for readiness (default: %(default)s)",
    )
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        # The reader went away (`tradebot crds | head`): not an error worth a traceback.
        sys.stderr.close()
        return 0


def _main(argv: Sequence[str] | None) -> int:
    from tradebot.observability.logging import configure_logging

    args = build_parser().parse_args(argv)
    configure_logging()  # once, here: nothing configures logging at import
    if args.command == "version":
        print(f"tradebot {__version__}")
        return 0
    if args.command == "cluster":
        return _cluster(args)
    if args.command == "crds":
        return _crds(args)
    if args.command == "api-docs":
        return _api_docs(args)
    if args.command == "operator":
        return _operator(args)
    handler = getattr(args, "handler", None)
    if handler is not None:
        status: int = handler(args)
        return status
    raise AssertionError(f"unhandled command {args.command}")  # argparse guarantees a command


if __name__ == "__main__":
    sys.exit(main())
