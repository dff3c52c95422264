"""The vault (S3, S4, S6, S7): envelope encryption of customer data with per-account Tink
keysets wrapped by the region's key-encryption key (KEK) from a key provider.

Modules: `_aead` (the only one touching raw crypto), `errors`, `providers/` (KEKs),
`keystore` (wrapped keysets and tombstones, apart from the cell data) and `vault` (the facade
the rest of sealflow uses). Nothing is built at import time: bootstrap wires it.
"""
