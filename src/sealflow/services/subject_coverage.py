"""Which tables hold data about a person, and how the subject export shows each column (D5).

`COVERAGE`: table -> column -> "value", or what the export says instead and why.
`NOT_ABOUT_A_PERSON`: table -> why it holds nothing about a member.
Every table of the schema is in exactly one of them: tests/integration/test_subject_requests.py
checks it, so a new table cannot be forgotten by the export and the erasure
(services.subject_export, services.subject_erasure)."""

from __future__ import annotations

# table -> column -> how the export shows it ("value", or what it says instead and why).
COVERAGE: dict[str, dict[str, str]] = {
    "users": {
        "id": "value", "account_id": "value (memberships)", "email": "value (opened)",
        "name": "value (opened)", "email_hash": "value (login_lookup_hash)",
        "password_hash": "withheld: a secret; `password_set` says whether there is one",
        "role": "value", "totp_secret": "withheld: a secret; `totp_enabled_at` instead",
        "totp_enabled_at": "value", "totp_last_step": "withheld: replay guard, no meaning",
        "created_at": "value", "disabled_at": "value"},
    "recovery_codes": {"code_hash": "withheld: a secret; counted (`recovery_codes_left`)",
                       "user_id": "implied", "account_id": "implied"},
    "sessions": {"id_hash": "public id (first 16 characters), never the whole hash",
                 "user_id": "implied", "account_id": "implied",
                 "csrf_hash": "withheld: a secret", "created_at": "value",
                 "last_seen_at": "value", "expires_at": "value", "revoked_at": "value",
                 "method": "value (how they signed in)"},
    "api_tokens": {"id": "value", "account_id": "implied", "name": "value",
                   "token_hash": "withheld: a secret", "created_at": "value",
                   "last_used_at": "value", "revoked_at": "value", "user_id": "implied",
                   "role": "value", "scopes": "value", "expires_at": "value"},
    "sso_identities": {"account_id": "value", "subject_hash": "value", "user_id": "implied",
                       "created_at": "value"},
    "invitations": {"id": "value", "account_id": "implied",
                    "token_hash": "withheld: a secret",
                    "email": "matched to the member; another invitee's address is withheld",
                    "role": "value", "invited_by": "value", "created_at": "value",
                    "expires_at": "value", "accepted_at": "value"},
    "login_failures": {"id": "withheld: a row number", "key": "its kind", "at": "value"},
    "authentications": {"id": "value", "account_id": "implied", "name": "value",
                        "type": "value", "shared": "value", "owner_id": "implied",
                        "status": "value", "config": "value (opened: settings)",
                        "secret": "withheld: never shown (S2)",
                        "revision": "withheld: a counter", "expires_at": "value",
                        "created_at": "value", "updated_at": "value",
                        "last_used_at": "value"},
    "audit_records": {"seq": "value", "account": "value", "at": "value",
                      "record": "value (parsed)", "prev_hash": "withheld: chain internals",
                      "hash": "withheld: chain internals"},
    "workflows": {"id": "value", "account_id": "implied", "name": "value",
                  "current_version": "value", "trigger_type": "value",
                  "webhook_token_hash": "withheld: a secret",
                  "webhook_token": "withheld: a secret", "webhook_secret": "withheld: a secret",
                  "enabled": "value", "created_at": "value", "updated_at": "value",
                  "deleted_at": "value"},
    "subject_requests": {"id": "value", "account_id": "implied", "kind": "value",
                         "law": "value", "user_id": "implied", "status": "value",
                         "requested_by": "value", "received_at": "value", "due_at": "value",
                         "completed_at": "value", "outcome": "value"},
    # Platform staff (I7; db/tables_staff.py): a staff member is a member of the operator's
    # own account.
    "platform_staff": {"user_id": "implied", "account_id": "value", "added_at": "value",
                       "added_by": "value"},
    "staff_grants": {"id": "value", "account_id": "value", "staff_user_id": "implied",
                     "staff_region": "value", "staff_account_id": "value",
                     "justification": "withheld: the customer account's record (sealed "
                                      "under its key), not the member's",
                     "status": "value", "requested_at": "value", "expires_at": "value",
                     "decided_at": "value", "decided_by": "implied", "revoked_at": "value",
                     "revoked_by": "value"},
    "staff_grant_reads": {"id": "withheld: a row number", "grant_id": "counted per grant",
                          "account_id": "implied", "at": "counted per grant",
                          "method": "counted per grant", "route": "counted per grant",
                          "path": "counted per grant (ids only)"},
    # Monitoring (A4; db/tables_monitoring.py).
    "audit_sinks": {"id": "value", "account_id": "implied", "name": "value", "kind": "value",
                    "config": "withheld: the account's destination", "secret": "withheld: "
                    "a secret", "fingerprint": "withheld: of the secret",
                    "cursor_seq": "withheld: delivery state", "delivered": "withheld",
                    "failures": "withheld", "next_attempt_at": "withheld",
                    "last_success_at": "withheld", "last_error": "withheld",
                    "created_by": "implied", "created_at": "value"},
    "alert_state": {"rule": "value", "key": "value (names the member or their address "
                    "pseudonym)", "fired_at": "value", "fired": "value"},
    "accounts": {"id": "value", "name": "value", "region": "value",
                 "created_at": "withheld: the account's, not the member's",
                 "settings": "withheld: the account's policies"},
}
NOT_ABOUT_A_PERSON: dict[str, str] = {
    "workflow_versions": "workflow documents: the account's work, no member recorded",
    "executions": "runs: the account's customer data, attributed to no member",
    "step_runs": "steps of runs: the account's customer data, attributed to no member",
    "schedule_state": "when a schedule last fired",
    "oauth_states": "a connect in flight (10 minutes), names no member",
    "account_deletions": "what an account deletion removed: counts only",
    "storage_lookup_keys": "a secret of the account's stored data",
    "storage_entries": "the account's stored data, attributed to no member",
    "storage_items": "the account's stored data, attributed to no member",
    "audit_checkpoints": "signed tree heads: hashes only",
    "sso_providers": "the account's identity provider settings",
    "sso_states": "an SSO login in flight (10 minutes), names no member",
    "purge_runs": "what a retention purge removed: counts only",
    "monitor_cursors": "how far monitoring has read the audit trail",
}
