"""`tradebot artifacts`: list a run's recorded artifacts, or fetch one back from the artifact
store with its sha256 checked."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from tradebot.commands.common import add_dsn_argument, explain, fail, missing_database, resolve_dsn
from tradebot.records.errors import RecordsError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    artifacts = sub.add_parser(
        "artifacts",
        help="list or fetch a run's artifacts (sha256 checked)",
        description="A run's artifacts as the records hold them (docs/artifacts.md): name, "
        "where the artifact store keeps it (pvc://CLAIM/RUN/NAME or s3://BUCKET/KEY), sha256 "
        "and size.",
    )
    actions = artifacts.add_subparsers(dest="artifacts_action", required=True, metavar="ACTION")
    listing = actions.add_parser(
        "list",
        help="the run's artifacts",
        description="Print the run's artifacts: name, size, sha256, path.",
    )
    listing.add_argument("run", metavar="RUN", help="run id (a Backtest's status.runId)")
    add_dsn_argument(listing)
    listing.set_defaults(handler=_list)

    get = actions.add_parser(
        "get",
        help="fetch one artifact to a file and check its sha256",
        description="Fetch artifact NAME of run RUN from where its record says it is kept and "
        "check its sha256 and size against the record. The bytes are written beside FILE and "
        "renamed into place only when they match: a mismatch is an error (exit 1) and leaves "
        "no file. S3: the bucket is the one in the recorded path; the endpoint and region come "
        "from --s3-endpoint-url/--s3-region or TRADEBOT_ARTIFACTS_S3_ENDPOINT_URL/_REGION, the "
        "credentials from boto3's usual sources (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, "
        "~/.aws). A claim: read where its volume is on this machine (the local cluster's "
        "hostPath volumes), found through the cluster's API (--kubeconfig).",
    )
    get.add_argument("run", metavar="RUN", help="run id (a Backtest's status.runId)")
    get.add_argument("name", metavar="NAME", help="artifact name (see `artifacts list`)")
    get.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="FILE",
        required=True,
        help="where to write it (replaced only by a verified copy)",
    )
    get.add_argument(
        "--s3-endpoint-url",
        metavar="URL",
        help="S3 API URL (default: $TRADEBOT_ARTIFACTS_S3_ENDPOINT_URL, else AWS)",
    )
    get.add_argument(
        "--s3-region",
        metavar="REGION",
        help="bucket region (default: $TRADEBOT_ARTIFACTS_S3_REGION)",
    )
    get.add_argument(
        "--kubeconfig",
        metavar="FILE",
        help="kubeconfig, for artifacts on a claim (default: $KUBECONFIG, ~/.kube/config)",
    )
    add_dsn_argument(get)
    get.set_defaults(handler=_get)


def _read(run_id: str, dsn_arg: str | None, command: str) -> tuple[str, list[object]] | int:
    from tradebot.records import open_store

    dsn = resolve_dsn(dsn_arg)
    missing = missing_database(dsn)
    if missing:
        return fail(command, missing)
    try:
        with open_store(dsn) as records:
            run = records.get_run(run_id)
            if run is None:
                return fail(command, f"no run {run_id} in the records")
            return run.namespace, list(records.get_artifacts(run_id))
    except (RecordsError, ValueError) as exc:
        return fail(command, explain(exc))


def _list(args: argparse.Namespace) -> int:
    from tradebot.records import ArtifactRecord

    found = _read(args.run, args.dsn, "artifacts list")
    if isinstance(found, int):
        return found
    for a in found[1]:
        assert isinstance(a, ArtifactRecord)
        print(f"{a.name}\t{a.size}\t{a.sha256}\t{a.path}")
    return 0


def _get(args: argparse.Namespace) -> int:
    from tradebot.artifacts.fetch import get
    from tradebot.artifacts.store import StoreError
    from tradebot.executors.local import claim_root
    from tradebot.records import ArtifactRecord
    from tradebot.settings import Settings

    command = "artifacts get"
    if not args.output.parent.resolve().is_dir():
        return fail(
            command, f"cannot write {args.output}: directory {args.output.parent} does not exist", 2
        )
    found = _read(args.run, args.dsn, command)
    if isinstance(found, int):
        return found
    namespace, records = found
    record = next(
        (a for a in records if isinstance(a, ArtifactRecord) and a.name == args.name), None
    )
    if record is None:
        names = ", ".join(a.name for a in records if isinstance(a, ArtifactRecord)) or "none"
        return fail(command, f"run {args.run} has no artifact {args.name} (it has: {names})")
    overrides = {
        k: v
        for k, v in (
            ("artifacts_s3_endpoint_url", args.s3_endpoint_url),
            ("artifacts_s3_region", args.s3_region),
        )
        if v
    }
    settings = Settings.from_env().model_copy(update=overrides)
    if args.kubeconfig:
        from tradebot import kube

        os.environ["KUBECONFIG"] = args.kubeconfig
        kube.reset()
    try:
        path = get(record, namespace, args.output, settings, claim_root)
    except StoreError as exc:
        return fail(command, str(exc))
    print(f"{path}: {record.size} bytes, sha256 {record.sha256} (verified)")
    return 0
