"""Logs (structlog JSON with correlation ids) and Prometheus metrics."""
