"""Tradebot Operator: runs Freqtrade trading bots on Kubernetes, safely and at scale."""

__version__ = "0.1.0"
