"""The bot API's credentials never show in a repr (a log line, a traceback's locals)."""

from __future__ import annotations

from tradebot.domain.bots import ApiCredentials

CREDS = ApiCredentials("u-Zq8sYv", "pw-Kx81mPq0rT", "jwt-Lf93kTqW0z", "ws-Pq7aB3nV")


def test_api_credentials_repr_hides_the_secrets() -> None:
    shown = [repr(CREDS), str(CREDS), f"{CREDS!r}", repr([CREDS]), repr({"c": CREDS})]
    for text in shown:
        assert "u-Zq8sYv" in text  # positive control: the dataclass repr, with its fields
        for secret in (CREDS.password, CREDS.jwt_secret_key, CREDS.ws_token):
            assert secret not in text
    # Still usable where it belongs, and still compared by value.
    assert CREDS.items()["password"] == "pw-Kx81mPq0rT"
    same = ApiCredentials("u-Zq8sYv", "pw-Kx81mPq0rT", "jwt-Lf93kTqW0z", "ws-Pq7aB3nV")
    assert same == CREDS
