"""A local S3 server for the artifact store's tests: moto's, on loopback, a free port."""

from __future__ import annotations

import contextlib
import socket
import urllib.request
from collections.abc import Iterator

import pytest

from tradebot.artifacts.store import S3Store

SECRET = "wJalrXUtnFEMI-not-a-real-secret-key"


@contextlib.contextmanager
def local_s3(monkeypatch: pytest.MonkeyPatch, bucket: str, port: int = 0) -> Iterator[str]:
    """The server's endpoint URL, with `bucket` made; the credentials boto3 reads from the
    environment, as a pod gets them from its Secret. `port` 0: a free one."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        # moto keeps its buckets per process, not per server: each use starts from none.
        # http on loopback
        reset = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")  # noqa: S310
        urllib.request.urlopen(reset, timeout=10).close()  # noqa: S310
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATRADEBOTTEST")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        S3Store(bucket, endpoint_url=endpoint).client().create_bucket(Bucket=bucket)
        yield endpoint
    finally:
        server.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
