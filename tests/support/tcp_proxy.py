"""A TCP proxy on loopback between a client and the API server, that can freeze: connections
stay open but no byte goes through, as with a half-open connection (a NAT entry or a load
balancer that forgot the flow, a peer that vanished without a FIN). Nothing fails by itself on
such a connection; only a client-side timeout ends it.

`freeze()` blackholes every connection open now, for good (they stay half-open after a thaw,
as a forgotten flow does), and every new connection while frozen. `thaw()` lets new
connections through again.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import yaml


class _Pair:
    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client, self.upstream = client, upstream
        self.dead = False  # frozen for good: never forwards again

    def close(self) -> None:
        for s in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                s.close()


class FreezingProxy:
    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._frozen = threading.Event()
        self._stop = threading.Event()
        self._pairs: list[_Pair] = []
        self._lock = threading.Lock()
        self.accepted = 0
        self._threads = [threading.Thread(target=self._accept, daemon=True)]

    def start(self) -> FreezingProxy:
        for t in self._threads:
            t.start()
        return self

    def freeze(self) -> None:
        with self._lock:
            self._frozen.set()
            for pair in self._pairs:
                pair.dead = True

    def thaw(self) -> None:
        self._frozen.clear()

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            for pair in self._pairs:
                pair.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.accepted += 1
            if self._frozen.is_set():
                # Accepted and then silent: the client's connect succeeds, nothing more.
                pair = _Pair(client, socket.socket())
                pair.dead = True
                with self._lock:
                    self._pairs.append(pair)
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            pair = _Pair(client, upstream)
            with self._lock:
                self._pairs.append(pair)
            threading.Thread(target=self._pump, args=(pair,), daemon=True).start()

    def _pump(self, pair: _Pair) -> None:
        sel = selectors.DefaultSelector()
        sel.register(pair.client, selectors.EVENT_READ, pair.upstream)
        sel.register(pair.upstream, selectors.EVENT_READ, pair.client)
        try:
            while not self._stop.is_set():
                if pair.dead:
                    # Keep both sockets open, read nothing, send nothing: half-open.
                    self._stop.wait(0.5)
                    continue
                for key, _ in sel.select(timeout=0.2):
                    if pair.dead:
                        break
                    src: socket.socket = key.fileobj  # type: ignore[assignment]
                    try:
                        data = src.recv(65536)
                    except OSError:
                        data = b""
                    if not data:
                        return
                    try:
                        key.data.sendall(data)
                    except OSError:
                        return
        finally:
            sel.close()
            if not pair.dead or self._stop.is_set():
                pair.close()


@contextlib.contextmanager
def proxied_kubeconfig(kubeconfig: Path, out: Path) -> Iterator[tuple[FreezingProxy, Path]]:
    """A FreezingProxy in front of the API server of `kubeconfig`, and a copy of it at `out`
    that goes through the proxy (same credentials; the server's certificate names 127.0.0.1,
    which the proxy's address is too)."""
    config = yaml.safe_load(kubeconfig.read_text())
    server = config["clusters"][0]["cluster"]["server"]
    host_port = server.split("://", 1)[1].rstrip("/")
    host, port = host_port.rsplit(":", 1)
    proxy = FreezingProxy((host, int(port))).start()
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{proxy.port}"
    out.write_text(yaml.safe_dump(config))
    try:
        yield proxy, out
    finally:
        proxy.stop()
