"""The hash chain: every kind of tampering is detected and located."""

from __future__ import annotations

from events.accounts import CashDeposited
from events.chain import GENESIS, ChainWalker, check_links, link, seal, unseal
from events.codec import frame


def _log(n: int) -> list[tuple[int, bytes]]:
    entries, digest = [], GENESIS
    for position in range(1, n + 1):
        body = frame(CashDeposited(enterprise_id=f"E{position % 3}", amount=position), 0).body(
            position
        )
        digest = link(digest, body)
        entries.append((position, seal(body, digest)))
    return entries


def test_sealed_payload_is_json_and_unseals_exactly() -> None:
    import orjson

    body = frame(CashDeposited(enterprise_id="E", amount=1), 0).body(1)
    digest = link(GENESIS, body)
    payload = seal(body, digest)
    assert orjson.loads(payload)["hash"] == digest
    assert unseal(payload) == (body, digest)


def test_intact_chain_verifies_and_reports_its_head() -> None:
    entries = _log(50)
    walker = ChainWalker()
    assert walker.feed(entries[:20]) and walker.feed(entries[20:])
    report = walker.report()
    assert report.ok and report.events == 50 and report.head_position == 50
    assert report.head_hash == unseal(entries[-1][1])[1]


def test_changed_payload_is_located() -> None:
    entries = _log(10)
    position, payload = entries[6]
    entries[6] = (position, payload.replace(b'"amount":7', b'"amount":8'))
    report = _walk(entries)
    assert not report.ok and report.broken_at == 7 and "hash mismatch" in (report.reason or "")
    assert report.events == 6


def test_deleted_entry_is_located() -> None:
    entries = _log(10)
    del entries[3]
    report = _walk(entries)
    assert not report.ok and report.broken_at == 4 and "missing" in (report.reason or "")


def test_swapped_payloads_are_located() -> None:
    entries = _log(10)
    (p4, a), (p5, b) = entries[3], entries[4]
    entries[3], entries[4] = (p4, b), (p5, a)
    assert _walk(entries).broken_at == 4


def test_recomputed_hash_still_breaks_the_next_link() -> None:
    entries = _log(10)
    body, _ = unseal(entries[2][1])
    forged = body.replace(b'"amount":3', b'"amount":300')
    previous = unseal(entries[1][1])[1]
    entries[2] = (3, seal(forged, link(previous, forged)))
    assert _walk(entries).broken_at == 4


def test_the_fast_check_passes_exactly_what_a_walk_passes() -> None:
    """check_links (the workers' fast path) compares all seals of a page at once; any
    change to one entry's seal, hash or closing brace, or an entry cut down to a bare
    seal, must fail it as it fails the walk."""
    entries = _log(6)
    payloads = [payload for _, payload in entries]
    assert check_links(GENESIS.encode(), payloads) == unseal(payloads[-1])[1].encode()
    payload = payloads[3]
    for index in range(len(payload) - 75, len(payload)):
        for byte in (b"A", b"0", b"}"):
            changed = payload[:index] + byte + payload[index + 1 :]
            if changed == payload:
                continue
            tampered = [*payloads[:3], changed, *payloads[4:]]
            assert not _walk(list(enumerate(tampered, 1))).ok
            assert check_links(GENESIS.encode(), tampered) is None
    # 75 bytes: a seal of the right hash for an empty body, which a walk rejects
    bare = b',"hash":"' + link(unseal(payloads[2])[1], b"}").encode() + b'"}'
    assert not _walk(list(enumerate([*payloads[:3], bare], 1))).ok
    assert check_links(GENESIS.encode(), [*payloads[:3], bare]) is None


def _walk(entries: list[tuple[int, bytes]]):  # type: ignore[no-untyped-def]
    walker = ChainWalker()
    walker.feed(entries)
    return walker.report()
