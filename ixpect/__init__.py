"""IXpect: a passive hygiene monitor for Internet Exchange peering LANs."""

__version__ = "0.1.0"
