"""Stopping a bot: through its REST API first, so Freqtrade stops trading cleanly (or only stops
entering), then by removing its pod. Shared by the breaker, `suspend` and every other hold.

The API step is best effort and bounded (a bot that does not answer within a second is not
waited for); removing the pod is not: when the API cannot confirm that entries stopped, the pod
goes, because a bot left running unconfirmed is the one outcome that must not happen.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from kubernetes.client.exceptions import ApiException

from tradebot import kube
from tradebot.controllers import bot_endpoints, runtime
from tradebot.domain import bots
from tradebot.domain.naming import child_name
from tradebot.executors.local_bots import LocalBotExecutor
from tradebot.freqtrade.rest import BotApiError, BotClient, BotUnreachable

# stop: /stop, then the pod goes. stopEntries: /stopentry, the pod stays (exits go on).
# suspend: /stopentry then /stop, then the pod goes (a person's graceful pause).
StopAction = Literal["stop", "stopEntries", "suspend"]
API_TIMEOUT_SECONDS = 1.0
# Freqtrade needs a few seconds after SIGTERM to cancel open orders and save its state.
POD_GRACE_SECONDS = 30


@dataclass(frozen=True)
class BotRef:
    namespace: str
    name: str
    uid: str

    @property
    def pod_name(self) -> str:
        return child_name("bot", self.name, self.uid)

    @property
    def api_secret_name(self) -> str:
        return child_name("bot-api", self.name, self.uid)

    @classmethod
    def of(cls, body: dict[str, Any]) -> BotRef:
        meta = body["metadata"]
        return cls(str(meta["namespace"]), str(meta["name"]), str(meta["uid"]))


@dataclass
class StopOutcome:
    pod_removed: bool = False
    # The API calls that succeeded, in order (e.g. ["stopentry", "forceexit", "stop"]).
    api_calls: list[str] = field(default_factory=list)
    api_error: str | None = None

    def describe(self) -> str:
        parts = [f"API {', '.join(self.api_calls)}" if self.api_calls else ""]
        if self.api_error:
            parts.append(f"API failed ({self.api_error})")
        parts.append("pod removed" if self.pod_removed else "")
        return "; ".join(p for p in parts if p) or "nothing was running"


def answered_last(status: dict[str, Any]) -> bool:
    """Whether the bot's API answered the last monitoring round (condition Reachable)."""
    return any(
        c.get("type") == "Reachable" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


def _read_json(read: Callable[..., Any], *args: str) -> dict[str, Any] | None:
    """`read(*args)` as the API server's JSON, or None where the object does not exist. Not
    turned into a model: a breaker reads every bot's pod and Secret at once when it trips, and
    parsing hundreds of pods into models would hold the interpreter longer than the API server
    takes to answer (the stops would wait on it)."""
    try:
        response = read(*args, _preload_content=False)
    except ApiException as e:
        if kube.is_not_found(e):
            return None
        raise
    try:
        body: dict[str, Any] = json.loads(response.data)
    finally:
        response.release_conn()
    return body


def api_credentials(ref: BotRef, *, known: bool = False) -> bots.ApiCredentials | None:
    """The bot API's generated credentials, or None before they exist. Never creates them.
    Read from the API server (and remembered: bot_endpoints.CREDENTIALS), or with `known`
    as last read when they were read before."""
    if known:
        found = bot_endpoints.CREDENTIALS.get(ref.namespace, ref.api_secret_name)
        if found is not None:
            return found
    secret = _read_json(kube.core().read_namespaced_secret, ref.api_secret_name, ref.namespace)
    credentials = None
    if secret is not None and secret.get("data"):
        data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
        credentials = bots.ApiCredentials(
            data["username"], data["password"], data["jwt-secret-key"], data["ws-token"]
        )
    bot_endpoints.CREDENTIALS.remember(ref.namespace, ref.api_secret_name, credentials)
    return credentials


def bot_url(ref: BotRef, *, known: bool = False) -> str | None:
    """Where the bot's API answers now: its local process (local executor) or its pod's IP,
    read from the API server or, with `known`, as the operator's watch of bot pods last saw
    it when it saw one."""
    settings = runtime.get().settings
    if settings.executor == "local":
        process = LocalBotExecutor(settings.local_state_dir).running(ref.uid)
        return process.url if process is not None else None
    ip = bot_endpoints.POD_IPS.ip(ref.namespace, ref.pod_name) if known else None
    if ip is None:
        pod = _read_json(kube.core().read_namespaced_pod, ref.pod_name, ref.namespace)
        ip = (pod.get("status") or {}).get("podIP") if pod is not None else None
    return f"http://{ip}:{bots.API_PORT}" if ip else None


Endpoint = tuple[str, bots.ApiCredentials]  # the API's URL, its credentials


def endpoint(ref: BotRef, *, known: bool = False) -> Endpoint | None:
    """Where the bot's API answers and with which credentials; with `known`, from what the
    operator last saw of its pod and credentials where it saw them (bot_endpoints), else
    from the API server. None while either is missing."""
    url = bot_url(ref, known=known)
    if url is None:
        return None
    credentials = api_credentials(ref, known=known)
    return (url, credentials) if credentials is not None else None


def _client(found: Endpoint | None) -> BotClient | None:
    if found is None:
        return None
    url, credentials = found
    # Basic auth on each call, no login: a trip's stop is one call or two per bot.
    return BotClient(
        url,
        credentials.username,
        credentials.password,
        timeout=API_TIMEOUT_SECONDS,
        basic_auth=True,
    )


def forget(ref: BotRef) -> None:
    """The bot is gone: its credentials are not kept any longer."""
    bot_endpoints.CREDENTIALS.remember(ref.namespace, ref.api_secret_name, None)


def still_running(ref: BotRef) -> bool:
    """Whether any of the bot still runs unstopped: its process (local executor) or a pod
    whose deletion the API server has not accepted yet."""
    settings = runtime.get().settings
    if settings.executor == "local":
        return LocalBotExecutor(settings.local_state_dir).running(ref.uid) is not None
    pod = kube.read_or_none(kube.core().read_namespaced_pod, ref.pod_name, ref.namespace)
    return pod is not None and pod.metadata.deletion_timestamp is None


def remove_pod(ref: BotRef) -> bool:
    """Deletes the bot's pod (Freqtrade shuts down cleanly on SIGTERM) and, with the local
    executor, its process. True if either existed."""
    removed = True
    try:
        kube.delete_pod(ref.pod_name, ref.namespace, grace_period_seconds=POD_GRACE_SECONDS)
    except ApiException as e:
        if not kube.is_not_found(e):
            raise
        removed = False
    settings = runtime.get().settings
    if settings.executor == "local":
        removed = LocalBotExecutor(settings.local_state_dir).stop(ref.uid) or removed
    return removed


OWNER_LABEL = "tradebot.dev/owner-uid"


def _api_steps(action: StopAction, force_exit: bool) -> list[str]:
    steps: list[str] = []
    if action in ("stopEntries", "suspend") or force_exit:
        steps.append("stopentry")
    if force_exit:
        steps.append("forceexit")
    if action in ("stop", "suspend"):
        steps.append("stop")
    return steps


def stop(
    ref: BotRef, action: StopAction, *, force_exit: bool = False, use_api: bool = True
) -> StopOutcome:
    """Stops the bot as `action` says. `use_api=False` skips the REST API (a bot known to be
    unreachable would only cost the timeout)."""
    outcome = StopOutcome()
    if use_api:
        # What the operator last saw of the bot's pod and credentials first (a trip stops
        # hundreds of bots at once); when that did not reach the bot, what the API server says
        # now, unless it says the same.
        known = endpoint(ref, known=True)
        _call_api(_client(known), action, force_exit, outcome)
        if outcome.api_error is not None and not outcome.api_calls:
            fresh = endpoint(ref)
            if fresh is not None and fresh != known:
                outcome.api_error = None
                _call_api(_client(fresh), action, force_exit, outcome)
    entries_stopped = "stopentry" in outcome.api_calls and outcome.api_error is None
    if action != "stopEntries" or not entries_stopped:
        outcome.pod_removed = remove_pod(ref)
    return outcome


def _call_api(
    client: BotClient | None, action: StopAction, force_exit: bool, outcome: StopOutcome
) -> None:
    """The REST steps of `action`, in order, until one fails (its error in `outcome`)."""
    if client is None:
        return
    calls = {
        "stopentry": client.stop_entries,
        "forceexit": client.force_exit_all,
        "stop": client.stop,
    }
    for step in _api_steps(action, force_exit):
        try:
            calls[step]()
        except (BotUnreachable, BotApiError) as e:
            outcome.api_error = str(e)
            return
        outcome.api_calls.append(step)
