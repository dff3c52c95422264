"""RFC 9162 §2.1 Merkle tree hashes, followed to the letter: a leaf is SHA-256(0x00 || data),
an interior node SHA-256(0x01 || left || right), the tree over n leaves splits at the largest
power of two below n. Inclusion (§2.1.3) and consistency (§2.1.4) proofs and their
verification. Pure: lists of 32-byte leaf hashes in, hashes out.

`Frontier` is the compact range of a growing tree (the roots of its perfect subtrees, largest
first): appending is O(1) amortised and the root O(log n), so checkpoints need not rehash the
whole log."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaves: Sequence[bytes], start: int = 0, end: int | None = None) -> bytes:
    """MTH(D[start:end]) over leaf hashes."""
    end = len(leaves) if end is None else end
    n = end - start
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaves[start]
    k = _split(n)
    return node_hash(root(leaves, start, start + k), root(leaves, start + k, end))


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PATH(index, D[n]) of §2.1.3.1 for the tree over all of `leaves`."""
    if not 0 <= index < len(leaves):
        raise ValueError(f"leaf {index} is not in a tree of {len(leaves)}")
    path: list[bytes] = []
    start, end = 0, len(leaves)
    while end - start > 1:  # descend, collecting siblings top-down; reversed at the end
        k = _split(end - start)
        if index - start < k:
            path.append(root(leaves, start + k, end))
            end = start + k
        else:
            path.append(root(leaves, start, start + k))
            start += k
    path.reverse()
    return path


def verify_inclusion(
    index: int, tree_size: int, leaf: bytes, path: Sequence[bytes], expected_root: bytes
) -> bool:
    """§2.1.3.2."""
    if index >= tree_size or index < 0:
        return False
    fn, sn = index, tree_size - 1
    r = leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == expected_root


def consistency_proof(first: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PROOF(first, D[n]) of §2.1.4.1, n = len(leaves)."""
    n = len(leaves)
    if not 0 <= first <= n:
        raise ValueError(f"tree size {first} is not within 0..{n}")
    if first in (0, n):
        return []
    return _subproof(first, leaves, 0, n, True)


def _subproof(m: int, leaves: Sequence[bytes], start: int, end: int, whole: bool) -> list[bytes]:
    n = end - start
    if m == n:
        return [] if whole else [root(leaves, start, end)]
    k = _split(n)
    if m <= k:
        return [*_subproof(m, leaves, start, start + k, whole), root(leaves, start + k, end)]
    return [*_subproof(m - k, leaves, start + k, end, False), root(leaves, start, start + k)]


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, path: Sequence[bytes]
) -> bool:
    """§2.1.4.2, with the trivial cases: an empty first tree is consistent with anything, and
    equal sizes need an empty proof and equal roots."""
    if first < 0 or first > second:
        return False
    if first == 0:
        return not path
    if first == second:
        return not path and first_root == second_root
    if not path:
        return False
    proof = list(path)
    if first & (first - 1) == 0:  # an exact power of two
        proof.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_root and sr == second_root and sn == 0


@dataclass
class Frontier:
    """The compact range [0, size): (height, hash) of each perfect subtree, largest first."""

    size: int = 0
    nodes: list[tuple[int, bytes]] = field(default_factory=list)

    def append(self, leaf: bytes) -> None:
        height, h = 0, leaf
        while self.nodes and self.nodes[-1][0] == height:
            _, left = self.nodes.pop()
            h = node_hash(left, h)
            height += 1
        self.nodes.append((height, h))
        self.size += 1

    def root(self) -> bytes:
        if not self.nodes:
            return EMPTY_ROOT
        r = self.nodes[-1][1]
        for _, h in reversed(self.nodes[:-1]):
            r = node_hash(h, r)
        return r

    def to_json(self) -> list[str]:
        return [f"{height}:{h.hex()}" for height, h in self.nodes]

    @classmethod
    def from_json(cls, size: int, items: Sequence[str]) -> Frontier:
        nodes = []
        for item in items:
            height, _, h = item.partition(":")
            nodes.append((int(height), bytes.fromhex(h)))
        if sum(1 << height for height, _ in nodes) != size:
            raise ValueError("frontier does not cover the tree size")
        return cls(size, nodes)
