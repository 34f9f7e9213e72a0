"""The hash chain that makes the journal tamper-evident.

Each entry's hash is ``sha256(previous hash ‖ canonical bytes)``, where the canonical
bytes include the entry's own position (see :mod:`events.codec`). Changing, deleting,
inserting or reordering any entry therefore changes every hash after it, and a verifier
that walks the log from the start names the first position where the stored hash and
the recomputed one part.

Stored form: the hash travels inside the stored payload so the library's table schema
is untouched. The payload is the canonical JSON object with one more member appended,
``…,"hash":"<64 hex>"}``; it stays valid JSON for a SQL or BI reader, and the canonical
bytes are recovered by cutting that fixed-length suffix off again, with no parsing.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import warnings
from binascii import hexlify
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib.machinery import EXTENSION_SUFFIXES
from operator import itemgetter
from pathlib import Path
from types import ModuleType

__all__ = [
    "ACCELERATED",
    "GENESIS",
    "SPEEDUPS",
    "ChainReport",
    "ChainWalker",
    "check_links",
    "check_links_python",
    "link",
    "seal",
    "seal_chain",
    "seal_chain_python",
    "unseal",
]

#: The "previous hash" of the first entry.
GENESIS = "0" * 64

_PREFIX = b',"hash":"'
_SUFFIX_LEN = len(_PREFIX) + 64 + 2  # ,"hash":"<64 hex>"}
_BODY = slice(None, -_SUFFIX_LEN)  # the canonical body without its closing brace
#: The seal of a payload: ,"hash":"<64 hex>"}
_TAIL = itemgetter(slice(-_SUFFIX_LEN, None))
#: What joins the hashes of consecutive seals: "},"hash":"
_BETWEEN = b'"}' + _PREFIX


def link(previous: str, body: bytes) -> str:
    """The hash of an entry with canonical `body` that follows an entry hashed `previous`."""
    return hashlib.sha256(previous.encode() + body).hexdigest()


def seal(body: bytes, digest: str) -> bytes:
    """The stored payload: canonical `body` with its hash as a trailing member."""
    return b'%s%s%s"}' % (body[:-1], _PREFIX, digest.encode())


def unseal(payload: bytes) -> tuple[bytes, str]:
    """Split a stored payload back into (canonical body, hash)."""
    if len(payload) <= _SUFFIX_LEN or payload[-_SUFFIX_LEN:-66] != _PREFIX or payload[-2:] != b'"}':
        raise ValueError("payload carries no hash seal")
    return payload[:-_SUFFIX_LEN] + b"}", payload[-66:-2].decode()


def check_links_python(previous: bytes, payloads: Sequence[bytes]) -> bytes | None:
    """The stored hash of the last of `payloads` when each one is sealed and links to
    the one before (the first to the hex hash `previous`); None when one does not.

    The fast path of verification, for entries whose positions the caller already
    knows to run on without a gap: it only says whether the stretch is whole, and a
    caller that gets None walks it again with :class:`ChainWalker` to name the break.
    The loop only hashes (the two OpenSSL calls per entry are ~70% of its time); the
    seals, hashes and closing braces are then checked in one comparison of all the
    payloads' 75-byte tails with the tails sealing would have written, which measured
    ~7% less CPU than comparing each tail in the loop.
    """
    # Everything the loop touches is a local, the slice prebuilt: ~10% of its time.
    sha256, body, close = hashlib.sha256, _BODY, b"}"
    computed: list[bytes] = []
    append = computed.append
    for payload in payloads:
        previous = hexlify(sha256(previous + payload[body] + close).digest())
        append(previous)
    if computed and (
        min(map(len, payloads)) <= _SUFFIX_LEN
        or b"".join(map(_TAIL, payloads)) != _PREFIX + _BETWEEN.join(computed) + b'"}'
    ):
        return None
    return previous


#: An entry waiting for its position: (type name, body head, body tail), the body at
#: position p being head ‖ decimal(p) ‖ tail (what events.codec.Pending holds).
Unsealed = tuple[str, bytes, bytes]


def seal_chain_python(
    pending: Sequence[Unsealed], position: int, previous: bytes
) -> tuple[list[bytes], bytes]:
    """Number, hash-chain and seal entries for a writer: (stored payloads, last hash).

    Each of `pending` is (type name, head, tail), its canonical body at position ``p``
    being ``head ‖ decimal(p) ‖ tail``; they take positions ``position + 1`` on, the
    first linked to the hex hash `previous`. :func:`link` and :func:`seal` per entry,
    inlined: every append of every log runs this.
    """
    sha256 = hashlib.sha256
    payloads: list[bytes] = []
    append = payloads.append
    for _, head, tail in pending:
        position += 1
        body = head + b"%d" % position + tail
        previous = hexlify(sha256(previous + body).digest())
        append(body[:-1] + _PREFIX + previous + b'"}')
    return payloads, previous


#: Set to a non-empty value other than 0: seal, verify and frame with the Python loops
#: even where the C ones are built (the same variable keeps the engine's compiled
#: modules out).
PURE_ENV = "CARBONX_PURE"


def _accelerator() -> ModuleType | None:
    """``_speedups``, the C build of this module's loops and of the codec's framer
    (events/_speedups.c) next to this file, or None (not built: no C compiler or
    OpenSSL headers at install, or pure requested).

    Loaded here, by file path, not as ``events._speedups``: chain workers load this
    module by path without the ``events`` package (:mod:`infra.chain_worker`), and the
    codec takes it from here (:data:`SPEEDUPS`).
    """
    if os.environ.get(PURE_ENV, "") not in ("", "0"):
        return None
    here = Path(__file__).resolve().parent
    for suffix in EXTENSION_SUFFIXES:
        path = here / f"_speedups{suffix}"
        if path.exists():
            spec = importlib.util.spec_from_file_location("_speedups", path)
            if spec is None or spec.loader is None:  # pragma: no cover - importlib's own
                return None
            module = importlib.util.module_from_spec(spec)
            try:
                spec.loader.exec_module(module)
            except ImportError:  # built against another Python or OpenSSL
                return None
            try:
                digest = hashlib.sha256((here / "_speedups.c").read_bytes()).hexdigest()
            except OSError:  # no source to vouch for the binary
                digest = None
            if digest is None or getattr(module, "SOURCE_SHA256", None) != digest:
                # Built from another version of the source: its answers are not the
                # ones this checkout's tests vouch for (reinstall to rebuild it).
                warnings.warn(
                    f"{path.name} was built from another events/_speedups.c: "
                    "sealing, verifying and framing in Python (reinstall carbonx to "
                    "rebuild it)",
                    RuntimeWarning,
                    stacklevel=2,
                )
                return None
            return module
    return None


#: The C module (events/_speedups.c), or None where it is not built or not used.
SPEEDUPS: ModuleType | None = _accelerator()
#: True when :func:`check_links` and :func:`seal_chain` (and the codec's framers) are
#: the C loops.
ACCELERATED = SPEEDUPS is not None
#: The fast path of verification: :func:`check_links_python`'s answers, in C when built
#: (on the engine's own journal entries ~0.5 µs a link against ~2.3 µs).
check_links: Callable[[bytes, Sequence[bytes]], bytes | None] = (
    SPEEDUPS.check_links if SPEEDUPS is not None else check_links_python
)
#: What log writers seal with: :func:`seal_chain_python`'s answers, in C when built
#: (~0.9 against ~3.3 µs an entry, and without the GIL while it hashes).
seal_chain: Callable[[Sequence[Unsealed], int, bytes], tuple[list[bytes], bytes]] = (
    SPEEDUPS.seal_chain if SPEEDUPS is not None else seal_chain_python
)


@dataclass(frozen=True, slots=True)
class ChainReport:
    """What a walk over the chain found."""

    ok: bool
    events: int
    head_position: int
    head_hash: str
    broken_at: int | None = None
    reason: str | None = None


class ChainWalker:
    """Walks stored (position, payload) pairs in order and checks every link.

    Incremental, so a verifier can feed it page by page from the database (and show
    progress) without holding the log in memory. After the first break it stops
    checking: everything after a break is unverifiable by construction.
    """

    __slots__ = ("_expected", "_hash", "broken_at", "events", "reason")

    def __init__(self, after_position: int = 0, after_hash: str = GENESIS) -> None:
        self._expected = after_position + 1
        self._hash = after_hash
        self.events = 0
        self.broken_at: int | None = None
        self.reason: str | None = None

    def feed(self, entries: Iterable[tuple[int, bytes]]) -> bool:
        """Check more entries; False once the chain is known to be broken.

        The hot loop hashes one concatenation (a single call into OpenSSL, whose
        per-call overhead dwarfs copying a few hundred bytes) and compares hex digests
        as bytes: verification reads every entry ever written.
        """
        if self.broken_at is not None:
            return False
        sha256 = hashlib.sha256
        prefix, tail = _PREFIX, _SUFFIX_LEN
        expected = self._expected
        previous = self._hash.encode()
        try:
            for position, payload in entries:
                if position != expected:
                    return self._break(
                        expected,
                        f"position {expected} is missing (next stored position is {position})",
                    )
                if len(payload) <= tail or payload[-tail:-66] != prefix or payload[-2:] != b'"}':
                    return self._break(position, "payload carries no hash seal")
                computed = hexlify(sha256(previous + payload[:-tail] + b"}").digest())
                if computed != payload[-66:-2]:
                    return self._break(
                        position,
                        f"hash mismatch: stored {payload[-66:-2].decode()}, "
                        f"recomputed {computed.decode()}",
                    )
                previous = computed
                expected += 1
        finally:
            # Kept current so that a break reports the last good head.
            self.events += expected - self._expected
            self._expected = expected
            self._hash = previous.decode()
        return True

    def _break(self, position: int, reason: str) -> bool:
        self.broken_at = position
        self.reason = reason
        return False

    def report(self) -> ChainReport:
        """The verdict so far."""
        return ChainReport(
            ok=self.broken_at is None,
            events=self.events,
            head_position=self._expected - 1,
            head_hash=self._hash,
            broken_at=self.broken_at,
            reason=self.reason,
        )
