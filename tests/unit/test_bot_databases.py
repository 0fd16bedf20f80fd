"""The per-bot PostgreSQL URL and password verifier (the server side is tested in
tests/integration/test_bot_storage.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac

from tradebot.records.bot_databases import bot_database_name, bot_dsn, scram_verifier

ADMIN = (
    "postgresql://operator:op-pw@db.example:6432/records?sslmode=require&user=operator"
    "&sslkey=/etc/op/key.pem&sslpassword=key-pw&connect_timeout=5"
)


def test_bot_dsn_has_the_bots_role_and_database_only():
    url = bot_dsn(ADMIN, "tradebot_bot_abc", "p/x+y")
    assert url == (
        "postgresql+psycopg://tradebot_bot_abc:p%2Fx%2By@db.example:6432/"
        "tradebot_bot_abc?sslmode=require&connect_timeout=5"
    )
    assert "op-pw" not in url
    assert "operator" not in url
    assert "key-pw" not in url
    assert "key.pem" not in url


def test_database_name_is_from_the_uid_and_fits():
    name = bot_database_name("5E1F0000-aaaa-bbbb-cccc-ddddeeeeffff")
    assert name == "tradebot_bot_5e1f0000aaaabbbbccccddddeeeeffff"
    assert len(name) <= 63


def test_scram_verifier_matches_rfc_7677_derivation():
    # RFC 7677's example user: password "pencil", its salt and 4096 iterations.
    salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    verifier = scram_verifier("pencil", salt=salt, iterations=4096)
    head, keys = verifier.split("$", 1)[1].split("$")
    assert head == "4096:W22ZaJ0SNY7soEsUEjb6gQ=="
    stored, server = (base64.b64decode(k) for k in keys.split(":"))
    salted = hashlib.pbkdf2_hmac("sha256", b"pencil", salt, 4096)
    # The RFC's ServerSignature for its exchange is made with this ServerKey.
    assert server == hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    assert stored == hashlib.sha256(client_key).digest()
    assert "pencil" not in verifier
    assert scram_verifier("pencil") != scram_verifier("pencil")  # a fresh salt each time
