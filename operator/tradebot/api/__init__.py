"""The API of the seven custom resources (group tradebot.dev, version v1alpha1).

The pydantic models here are the one source of truth: crds/ is generated from them, and the
operator validates every object with them again before acting on it.
"""

from tradebot.api.base import API_VERSION, GROUP, VERSION

__all__ = ["API_VERSION", "GROUP", "VERSION"]
