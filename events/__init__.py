"""carbonx's event vocabulary, codec and hash chain.

Importing the package registers every event type, so a reader can decode any entry of
the log. Nothing here imports carbonx's other packages or any infrastructure.
"""

from events import accounts, commands, exchange, market, registry
from events.base import Event, event_type, lookup, registered_types, upcaster
from events.chain import GENESIS, ChainReport, ChainWalker, link, seal, unseal
from events.codec import Decoded, FloatRefused, Pending, decode, encode_data, frame, to_event

__all__ = [
    "GENESIS",
    "ChainReport",
    "ChainWalker",
    "Decoded",
    "Event",
    "FloatRefused",
    "Pending",
    "accounts",
    "commands",
    "decode",
    "encode_data",
    "event_type",
    "exchange",
    "frame",
    "link",
    "lookup",
    "market",
    "registered_types",
    "registry",
    "seal",
    "to_event",
    "unseal",
    "upcaster",
]
