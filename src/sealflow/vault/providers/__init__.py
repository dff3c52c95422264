"""Key providers: where a region's key-encryption key (KEK) lives. `base.KeyProvider` is the
seam; `local_file` is the default, `transit` speaks HashiCorp Vault's Transit API."""
