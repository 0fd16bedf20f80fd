"""Pure decisions, no I/O and no kopf: queue admission, manifests, Freqtrade configs."""
