"""Exactly-once deduplication: drop records whose identity was already seen.

The pure core (:class:`DedupCore`) decides per record from its key's state; the
identity (:func:`identity_of`) comes from an id field or a content fingerprint.
See :mod:`onceflow.operators.dedup.core` for the horizon, processing-time TTL and state
size guarantees.
"""

from onceflow.operators.dedup.core import DedupCore, DedupStats, simulate
from onceflow.operators.dedup.identity import IdentitySpec, identity_of

__all__ = ["DedupCore", "DedupStats", "IdentitySpec", "identity_of", "simulate"]
