"""What the commands that talk to the cluster share: --kubeconfig, --namespace, and turning
the API's errors into one line that says what went wrong."""

from __future__ import annotations

import argparse
import os
from typing import Any

from kubernetes.client.exceptions import ApiException


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--namespace",
        "-n",
        metavar="NS",
        help="namespace (default: the kubeconfig context's, else default)",
    )
    parser.add_argument(
        "--kubeconfig",
        metavar="FILE",
        help="kubeconfig (default: $KUBECONFIG, ~/.kube/config, in-cluster)",
    )


def connect(args: argparse.Namespace) -> str:
    """Points the shared client at the chosen cluster; returns the namespace to use."""
    from kubernetes import config

    from tradebot import kube

    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig
    kube.reset()
    if args.namespace:
        return str(args.namespace)
    try:
        _, active = config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
            config_file=os.environ.get("KUBECONFIG")
        )
        return str((active or {}).get("context", {}).get("namespace") or "default")
    except Exception:
        return "default"


def describe(error: ApiException, what: str) -> str:
    if error.status == 404:
        return f"{what} not found"
    if error.status == 403:
        return f"not allowed to read or change {what} (HTTP 403)"
    reason: Any = error.reason
    return f"{what}: HTTP {error.status} {reason}"
