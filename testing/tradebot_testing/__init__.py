"""Test tools of Tradebot Operator that never ship in its images: the exchange double (a test
double of an exchange, for machines with no exchange)."""
