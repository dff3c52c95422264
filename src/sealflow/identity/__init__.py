"""Identity and access (SPEC I): password hashing and policy, TOTP and recovery codes, login
throttling, roles and permissions. Pure building blocks: storage and routes use them."""
