"""The shared study's storage URL: where a worker finds it, and keeping it out of any text.

It is a secret (it may carry the database password): the runner passes it only through the
environment, and every message that might hold it goes through `redact` first.
"""

from __future__ import annotations

import urllib.parse

STORAGE_ENV = "TRADEBOT_STUDY_STORAGE"


def redact(text: str, url: str | None) -> str:
    """`text` with the URL, and its password wherever it appears alone, taken out."""
    if not url:
        return text
    text = text.replace(url, "[storage]")
    try:
        password = urllib.parse.urlsplit(url).password
    except ValueError:
        password = None
    return text.replace(password, "***") if password else text
