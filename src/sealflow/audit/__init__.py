"""The tamper-evident audit log (A1, A2): canonical JSON records (RFC 8785) chained by hash,
an RFC 9162 Merkle tree over them, and Ed25519-signed checkpoints of its head.

- canonical: RFC 8785 serialisation (pure)
- merkle: RFC 9162 tree hashes, inclusion and consistency proofs (pure)
- records: the event catalogue and the record body (pure)
- signing: the region's Ed25519 checkpoint key, kept in a file outside the database
- log: append (inside the caller's transaction: fail closed), checkpoints, reads
- verify: the full check of chain, tree and checkpoints, naming the first bad record
"""
