"""RFC 9162 Merkle trees: roots against the Certificate Transparency test vectors, and every
inclusion and consistency proof up to 40 leaves verifies, while a changed proof, leaf, root
or size does not."""

from __future__ import annotations

import hashlib

import pytest

from sealflow.audit import merkle

# The CT reference test data (certificate-transparency-go testdata): 8 leaves and the roots
# of their prefixes.
CT_LEAVES = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
             "606162636465666768696a6b6c6d6e6f"]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def leaves(n: int) -> list[bytes]:
    return [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


def test_the_empty_tree_and_the_ct_vectors() -> None:
    assert merkle.root([]) == hashlib.sha256(b"").digest()
    hashed = [merkle.leaf_hash(bytes.fromhex(x)) for x in CT_LEAVES]
    for n, expected in enumerate(CT_ROOTS, start=1):
        assert merkle.root(hashed[:n]).hex() == expected


def test_the_frontier_gives_the_same_root_as_the_whole_tree() -> None:
    frontier = merkle.Frontier()
    ls = leaves(70)
    for i, leaf in enumerate(ls):
        frontier.append(leaf)
        assert frontier.root() == merkle.root(ls[: i + 1])
        again = merkle.Frontier.from_json(frontier.size, frontier.to_json())
        assert again.root() == frontier.root()
    with pytest.raises(ValueError, match="cover"):
        merkle.Frontier.from_json(5, frontier.to_json())
    assert merkle.Frontier().root() == merkle.EMPTY_ROOT


def test_every_inclusion_proof_verifies_and_a_changed_one_does_not() -> None:
    for n in range(1, 41):
        ls = leaves(n)
        r = merkle.root(ls)
        for i in range(n):
            path = merkle.inclusion_proof(i, ls)
            assert merkle.verify_inclusion(i, n, ls[i], path, r)
            assert not merkle.verify_inclusion(i, n, merkle.leaf_hash(b"x"), path, r)
            assert not merkle.verify_inclusion(i, 2 * n + 2, ls[i], path, r)
            if n > 1:
                assert not merkle.verify_inclusion((i + 1) % n, n, ls[i], path, r)
                bad = [*path]
                bad[0] = bytes(32)
                assert not merkle.verify_inclusion(i, n, ls[i], bad, r)
                assert not merkle.verify_inclusion(i, n, ls[i], path[:-1], r)
    with pytest.raises(ValueError):
        merkle.inclusion_proof(3, leaves(3))
    assert not merkle.verify_inclusion(3, 3, leaves(1)[0], [], merkle.root(leaves(3)))


def test_every_consistency_proof_verifies_and_a_fork_does_not() -> None:
    for n in range(1, 41):
        ls = leaves(n)
        second = merkle.root(ls)
        for m in range(0, n + 1):
            first = merkle.root(ls[:m])
            path = merkle.consistency_proof(m, ls)
            assert merkle.verify_consistency(m, n, first, second, path), (m, n)
            if 0 < m < n:
                forked = merkle.root([*ls[: m - 1], merkle.leaf_hash(b"fork")])
                assert not merkle.verify_consistency(m, n, forked, second, path)
                assert not merkle.verify_consistency(m, n, first, bytes(32), path)
                bad = [*path]
                bad[-1] = bytes(32)
                assert not merkle.verify_consistency(m, n, first, second, bad)
                assert not merkle.verify_consistency(m, n, first, second, [])
                assert not merkle.verify_consistency(m, 2 * n + 2, first, second, path)
    r = merkle.root(leaves(4))
    assert not merkle.verify_consistency(5, 4, r, r, [])
    assert not merkle.verify_consistency(4, 4, r, bytes(32), [])
    assert not merkle.verify_consistency(0, 4, merkle.EMPTY_ROOT, r, [r])
    with pytest.raises(ValueError):
        merkle.consistency_proof(5, leaves(4))
