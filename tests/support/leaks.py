"""Finding a secret in text a reader can see, also where it is base64-encoded (a Secret's or
ConfigMap's `data`/`binaryData`, an env var or a token that carries it encoded): a plain
substring match passes those."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator

# Runs of base64 (standard or URL-safe alphabet) long enough to hide a secret.
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/_-]{12,}={0,2}")


def encoded_forms(secret: str) -> set[str]:
    """The text base64 makes of `secret` wherever it sits in a longer encoded value: at
    each of the three alignments, only the characters that depend on the secret alone."""
    raw = secret.encode()
    forms = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).decode().rstrip("=")
        start = -(-offset * 4 // 3)  # characters mixed with the bytes before it
        end = (offset + len(raw)) // 3 * 4  # whole groups only: the rest mixes with after
        core = encoded[start:end]
        if len(core) >= 8:
            forms.add(core)
            forms.add(core.replace("+", "-").replace("/", "_"))
    return forms


def decoded_runs(text: str) -> Iterator[str]:
    """Every base64-looking run of `text`, decoded (as far as it decodes)."""
    for match in _BASE64_RUN.finditer(text):
        run = match.group().rstrip("=")
        for alphabet in (None, b"-_"):
            for cut in range(4):  # a run may start inside a group: try each start
                piece = run[cut:]
                piece = piece[: len(piece) // 4 * 4]
                if not piece:
                    continue
                try:
                    data = base64.b64decode(piece, altchars=alphabet, validate=True)
                except (binascii.Error, ValueError):
                    continue
                yield data.decode("utf-8", "replace")


def leaks(secret: str, text: str) -> bool:
    """Whether `secret` can be read from `text`: as it is, base64-encoded inside it, or in a
    base64 run of it once decoded."""
    if secret in text:
        return True
    if any(form in text for form in encoded_forms(secret)):
        return True
    return any(secret in decoded for decoded in decoded_runs(text))
