"""The upload step of a Backtest Job with an S3 artifact store: the only container of the pod
that gets the bucket's credentials, and one that never imports a strategy.

The runner container runs Freqtrade, which imports the user's strategy: whatever is in that
container's environment, the strategy can read and send anywhere. So the runner gets no
credentials; it hands its artifacts over through the pod's shared emptyDir instead:

1. the runner writes `<dir>/.upload/request.json` (the artifacts' names) when it is done;
2. this step (a native sidecar: an init container with restartPolicy Always, so it runs beside
   the runner and is stopped when the runner ends) uploads each named file to
   `<prefix><runId>/<name>` and writes `<dir>/.upload/result.json` (each artifact's record, or
   the error);
3. the runner puts those records in its summary, its termination message as before.

What the runner container may have tampered with is only data: the run id is this step's own
(from the Job), every name must be a plain file name, and each file is opened without following
links and copied to this container's own /tmp before it is uploaded, so a link to
/proc/self/environ (this step's credentials) or a file swapped meanwhile is never what goes to
the bucket.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import stat
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from tradebot.artifacts import store
from tradebot.artifacts.location import BadLocation, check_part
from tradebot.settings import Settings

HANDOFF_DIR = ".upload"
REQUEST = "request.json"
RESULT = "result.json"
# Set on the runner container: where it hands its artifacts over (the shared emptyDir).
HANDOFF_ENV = "TRADEBOT_ARTIFACTS_HANDOFF"
RUN_ID_ENV = "TRADEBOT_RUN_ID"
_MAX_ARTIFACTS = 64


class UploadRefused(Exception):
    """A request this step will not carry out (a bad name, a link, not a file)."""


def write_atomically(path: Path, content: str) -> None:
    """`content` at `path`, whole or not at all (a reader never sees half of it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(content)
    tmp.replace(path)


def _private_copy(directory: Path, name: str, scratch: Path) -> Path:
    """The file `name` of `directory`, copied into `scratch` (this container's own)."""
    fd = os.open(directory / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UploadRefused(f"{name} is not a regular file")
        target = scratch / name
        with os.fdopen(os.dup(fd), "rb") as source, target.open("wb") as out:
            while chunk := source.read(1 << 20):
                out.write(chunk)
        return target
    finally:
        os.close(fd)


def upload(directory: Path, run_id: str, request: dict[str, Any], found: Any) -> dict[str, Any]:
    """Carries out one request; the result to hand back (records, or the error)."""
    names = request.get("artifacts")
    if not isinstance(names, list) or len(names) > _MAX_ARTIFACTS:
        return {"error": "the upload request names no artifact list"}
    records = []
    with tempfile.TemporaryDirectory(prefix="upload-") as scratch:
        for name in names:
            try:
                plain = check_part("artifact name", str(name))
                if "/" in plain or plain.startswith("."):
                    raise UploadRefused(f"{name!r} is not a plain file name")
                copy = _private_copy(directory, plain, Path(scratch))
                records.append(found.put(run_id, copy, plain).model_dump(mode="json"))
            except (UploadRefused, BadLocation, store.StoreError) as e:
                return {"error": str(e)}
            except OSError as e:
                return {"error": f"cannot read {name}: {e.strerror or e}"}
    return {"artifacts": records}


def serve(directory: Path, stop: threading.Event, poll: float = 0.2) -> int:
    """Waits for the runner's request, answers it once, then waits to be stopped."""
    run_id = os.environ.get(RUN_ID_ENV, "")
    handoff = directory / HANDOFF_DIR
    request_path = handoff / REQUEST
    answered = False
    while not stop.is_set():
        if not answered and request_path.is_file():
            try:
                request = json.loads(request_path.read_text())
            except (OSError, ValueError) as e:
                result: dict[str, Any] = {"error": f"unreadable upload request: {e}"}
            else:
                try:
                    found = store.from_env()
                except store.StoreError as e:
                    result = {"error": str(e)}
                else:
                    result = (
                        upload(directory, run_id, request, found)
                        if run_id
                        else {"error": f"{RUN_ID_ENV} is not set"}
                    )
            write_atomically(handoff / RESULT, json.dumps(result))
            print(json.dumps({"event": "upload.answered", "ok": "error" not in result}), flush=True)
            answered = True
        stop.wait(poll)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tradebot.artifacts.uploader")
    parser.add_argument("--dir", type=Path, required=True, help="the shared artifacts directory")
    args = parser.parse_args(argv)
    Settings.from_env()  # fails at start, with its message, on a store without its place
    stop = threading.Event()
    # The kubelet stops a native sidecar with SIGTERM once the runner has ended.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    return serve(args.dir, stop)


def hand_over(directory: Path, names: list[str], timeout: float) -> dict[str, Any]:
    """The runner's side: asks the upload step for `names` (files of `directory`) and waits
    for its answer (an {"error": ...} after `timeout` seconds without one)."""
    handoff = directory / HANDOFF_DIR
    (handoff / RESULT).unlink(missing_ok=True)
    write_atomically(handoff / REQUEST, json.dumps({"artifacts": names}))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result_path = handoff / RESULT
        if result_path.is_file():
            try:
                answer: dict[str, Any] = json.loads(result_path.read_text())
                return answer
            except ValueError as e:
                return {"error": f"unreadable upload result: {e}"}
        time.sleep(0.2)
    return {"error": f"the upload step did not answer within {timeout:.0f} s"}


if __name__ == "__main__":
    sys.exit(main())
