"""The authorization matrix (SPEC I1): every API route x every role x (own account, another
account) gets the expected answer, through the real application, database and services.

Roles cannot sign in yet, so the test stands in for the login: it overrides the `caller`
dependency with a Caller of the role under test; everything after it (the route's permission
check, the services, the SQLite cell) is real.

The rules proved:
- a role without the route's permission gets 403 `forbidden`, naming the permission, before
  anything else happens: also for another account's ids (it learns nothing about them), and
  nothing changes;
- a role with it gets the route's success on its own account's resources, and 404 on another
  account's ids: never their data;
- routes that name no resource (lists, creates, the account itself) can only reach the
  caller's own account: with another account full of data, their answers carry none of it.
  The one way to name another account there, `DELETE /v1/account` with another account's id
  in `confirm`, is refused with 409 `confirmation_mismatch`.

ROUTES below is written out by hand on purpose: changing a route's declared permission, or
adding a route, must change this test too (test_the_written_table_is_what_the_routes_declare).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from sealflow.api.app import create_app
from sealflow.api.deps import caller
from sealflow.api.permissions import declarations
from sealflow.bootstrap import Platform, build_platform
from sealflow.config import RegionSettings, Settings
from sealflow.db import tables
from sealflow.identity.permissions import Permission, Role, has_permission
from sealflow.services import accounts, authentications, executions, workflows
from sealflow.services.accounts import Caller

P = Permission

# route: (the permission it needs, its answer for a role holding it, on its own account)
# fmt: off
ROUTES: dict[str, tuple[Permission, int]] = {
    "GET /v1/account":                                   (P.ACCOUNT_READ, 200),
    "DELETE /v1/account":                                (P.ACCOUNT_DELETE, 200),
    "GET /v1/account/settings":                          (P.ACCOUNT_READ, 200),
    "PATCH /v1/account/settings":                        (P.SETTINGS_WRITE, 200),
    "POST /v1/workflows/validate":                       (P.WORKFLOWS_WRITE, 200),
    "POST /v1/workflows":                                (P.WORKFLOWS_WRITE, 201),
    "GET /v1/workflows":                                 (P.WORKFLOWS_READ, 200),
    "GET /v1/workflows/{workflow_id}":                   (P.WORKFLOWS_READ, 200),
    "PUT /v1/workflows/{workflow_id}":                   (P.WORKFLOWS_WRITE, 200),
    "DELETE /v1/workflows/{workflow_id}":                (P.WORKFLOWS_WRITE, 204),
    "GET /v1/workflows/{workflow_id}/versions":          (P.WORKFLOWS_READ, 200),
    "GET /v1/workflows/{workflow_id}/versions/{version}": (P.WORKFLOWS_READ, 200),
    "POST /v1/workflows/{workflow_id}/run":              (P.WORKFLOWS_RUN, 202),
    "POST /v1/authentications":                          (P.AUTHENTICATIONS_WRITE, 201),
    "GET /v1/authentications":                           (P.AUTHENTICATIONS_READ, 200),
    "GET /v1/authentications/{auth_id}":                 (P.AUTHENTICATIONS_READ, 200),
    "PATCH /v1/authentications/{auth_id}":               (P.AUTHENTICATIONS_WRITE, 200),
    "DELETE /v1/authentications/{auth_id}":              (P.AUTHENTICATIONS_WRITE, 204),
    "POST /v1/authentications/{auth_id}/test":           (P.AUTHENTICATIONS_WRITE, 200),
    "POST /v1/authentications/{auth_id}/connect":        (P.AUTHENTICATIONS_WRITE, 200),
    "GET /v1/executions":                                (P.EXECUTIONS_READ, 200),
    "GET /v1/executions/{execution_id}":                 (P.EXECUTIONS_READ, 200),
    "POST /v1/executions/{execution_id}/cancel":         (P.EXECUTIONS_MANAGE, 200),
    "POST /v1/executions/{execution_id}/replay":         (P.EXECUTIONS_MANAGE, 202),
    "GET /v1/account/audit":                             (P.AUDIT_READ, 200),
    "GET /v1/account/audit/export":                      (P.AUDIT_READ, 200),
}
# Members, sessions and second factors (the identity routes): their answers for a role that
# holds the permission need members and sessions, proved by those routes' own tests; here,
# every role without the permission is refused, whatever the ids.
IDENTITY_ROUTES: dict[str, Permission] = {
    "POST /v1/auth/logout":                              P.ACCOUNT_READ,
    "POST /v1/auth/logout-all":                          P.ACCOUNT_READ,
    "GET /v1/me":                                        P.ACCOUNT_READ,
    "POST /v1/me/totp":                                  P.ACCOUNT_READ,
    "POST /v1/me/totp/confirm":                          P.ACCOUNT_READ,
    "DELETE /v1/me/totp":                                P.ACCOUNT_READ,
    "GET /v1/members":                                   P.MEMBERS_READ,
    "POST /v1/invitations":                              P.MEMBERS_MANAGE,
    "PATCH /v1/members/{member_id}":                     P.MEMBERS_MANAGE,
    "DELETE /v1/members/{member_id}":                    P.MEMBERS_MANAGE,
    "PUT /v1/account/sso":                               P.SSO_MANAGE,
    "GET /v1/account/sso":                               P.SSO_MANAGE,
    "DELETE /v1/account/sso":                            P.SSO_MANAGE,
    "POST /v1/tokens":                                   P.TOKENS_OWN,
    "GET /v1/tokens":                                    P.TOKENS_OWN,
    "DELETE /v1/tokens/{token_id}":                      P.TOKENS_OWN,
    # Data subject requests (D5; tests/integration/test_subject_requests.py).
    "POST /v1/account/subject-requests":                 P.SUBJECT_REQUESTS_MANAGE,
    "GET /v1/account/subject-requests":                  P.SUBJECT_REQUESTS_MANAGE,
    "GET /v1/account/subject-requests/{request_id}":     P.SUBJECT_REQUESTS_MANAGE,
    "POST /v1/account/subject-requests/{request_id}/run": P.SUBJECT_REQUESTS_MANAGE,
    "POST /v1/account/subject-requests/{request_id}/reject": P.SUBJECT_REQUESTS_MANAGE,
    "GET /v1/account/subject-requests/{request_id}/export": P.SUBJECT_REQUESTS_MANAGE,
    # Staff access (I7; tests/integration/test_staff_access.py): no member role is staff.
    "POST /v1/staff/grants":                             P.STAFF_ACCESS,
    "GET /v1/staff/grants":                              P.STAFF_ACCESS,
    "DELETE /v1/staff/grants/{grant_id}":                P.STAFF_ACCESS,
    "GET /v1/account/staff-access":                      P.AUDIT_READ,
    "POST /v1/account/staff-access/{grant_id}/approve":  P.STAFF_GRANTS_MANAGE,
    "POST /v1/account/staff-access/{grant_id}/deny":     P.STAFF_GRANTS_MANAGE,
    "POST /v1/account/staff-access/{grant_id}/revoke":   P.STAFF_GRANTS_MANAGE,
    # Proofs of the account's records (tests/integration/test_audit_events.py).
    "GET /v1/account/audit/{seq}/proof":                 P.AUDIT_READ,
    "GET /v1/account/audit/consistency":                 P.AUDIT_READ,
    # SIEM streaming of the account's trail (tests/integration/test_siem.py).
    "POST /v1/account/audit-sinks":                      P.AUDIT_MANAGE,
    "GET /v1/account/audit-sinks":                       P.AUDIT_MANAGE,
    "GET /v1/account/audit-sinks/{sink_id}":             P.AUDIT_MANAGE,
    "DELETE /v1/account/audit-sinks/{sink_id}":          P.AUDIT_MANAGE,
    "POST /v1/account/audit-sinks/{sink_id}/test":       P.AUDIT_MANAGE,
}
# Routes with their own check (or none), outside the role matrix.
PUBLIC = {"POST /hooks/{region}/{token}", "GET /openapi.json", "POST /v1/accounts",
          "GET /oauth/callback", "GET /healthz", "GET /readyz", "POST /v1/auth/login",
          "POST /v1/invitations/accept", "GET /v1/auth/sso/start",
          "GET /v1/auth/sso/callback", "GET /metrics"}
# fmt: on

MANUAL = {"name": "manual", "trigger": {"type": "manual"},
          "steps": [{"name": "one", "connector": "transform", "input": {"expression": "1"}}]}

BODIES: dict[str, Callable[[Caller], Any]] = {
    # `confirm` names the target account: the caller's own, or the other one.
    "PATCH /v1/account/settings": lambda _: {"redaction": {"extra_field_names": ["pin"]}},
    "POST /v1/workflows/validate": lambda _: {"definition": MANUAL},
    "POST /v1/workflows": lambda _: {"definition": MANUAL},
    "PUT /v1/workflows/{workflow_id}": lambda _: {"definition": {**MANUAL, "name": "changed"}},
    "POST /v1/workflows/{workflow_id}/run": lambda _: {"input": {"n": 1}},
    "POST /v1/authentications": lambda _: {"name": "new key", "type": "api_key",
                                           "secret": {"key": "k-123456"}},
    "PATCH /v1/authentications/{auth_id}": lambda _: {"name": "renamed"},
}


@dataclass(frozen=True)
class Resources:
    """One account's things, each route's path parameters among them."""

    account_id: str
    workflow_id: str
    queued_id: str  # an execution still queued: cancel
    finished_id: str  # an execution that ended: replay
    key_id: str  # an api_key authentication
    oauth_id: str  # an oauth2_code authentication: connect

    def path_params(self, route: str) -> dict[str, str]:
        finished = route.endswith("/replay")
        return {
            "workflow_id": self.workflow_id,
            "version": "1",
            "execution_id": self.finished_id if finished else self.queued_id,
            "auth_id": self.oauth_id if route.endswith("/connect") else self.key_id,
        }

    def ids(self) -> set[str]:
        return {self.account_id, self.workflow_id, self.queued_id, self.finished_id,
                self.key_id, self.oauth_id}


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    data = tmp_path_factory.mktemp("matrix") / "data"
    p = build_platform(Settings(data_dir=data, regions={"us": RegionSettings()}))
    yield p
    p.cells.dispose()


@pytest.fixture(scope="module")
def app(platform: Platform) -> FastAPI:
    return create_app(platform, run_workers=False)  # no lifespan: queued runs stay queued


@pytest.fixture(scope="module")
def client(app: FastAPI) -> Iterator[TestClient]:
    yield TestClient(app)
    app.dependency_overrides.clear()


def _account(p: Platform, name: str) -> Resources:
    account, _ = accounts.create_account(p.cells, p.clock, name=name, region="us")
    # A token id that fits the VARCHAR(36) it is stored in (authentications.owner_id).
    who = Caller(region="us", account_id=account.id, token_id=f"t-{account.id[:34]}")
    flow = workflows.create(p.cells, p.clock, p.registry, p.limits, who, MANUAL).workflow
    queued = executions.start(p.cells, p.clock, who, flow.id, {"n": 0})
    finished = executions.start(p.cells, p.clock, who, flow.id, {"n": 1})
    executions.cancel(p.cells, p.clock, who, finished.id)
    key = authentications.create(
        p.cells, p.clock, who, name="key", type_name="api_key", shared=True, settings={},
        secret={"key": "k-abcdef"}, expires_at=None)
    oauth = authentications.create(
        p.cells, p.clock, who, name="oauth", type_name="oauth2_code", shared=True,
        settings={"authorize_url": "https://idp.example.com/authorize",
                  "token_url": "https://idp.example.com/token", "client_id": "sealflow"},
        secret={"client_secret": "s-abcdef"}, expires_at=None)
    return Resources(account.id, flow.id, queued.id, finished.id, key.id, oauth.id)


def _rows(p: Platform, account_id: str) -> dict[str, int]:
    """How many rows the account has in the tables a route could change."""
    out = {}
    with p.cells["us"].read() as conn:
        for table in (tables.accounts, tables.workflows, tables.workflow_versions,
                      tables.executions, tables.authentications, tables.oauth_states):
            column = table.c.id if table is tables.accounts else table.c.account_id
            out[table.name] = conn.execute(
                select(func.count()).select_from(table).where(column == account_id)).scalar_one()
    return out


def _fingerprint(p: Platform, account_id: str) -> str:
    """Everything about the account's rows that a refused request must leave alone."""
    with p.cells["us"].read() as conn:
        parts = []
        for table in (tables.workflows, tables.executions, tables.authentications):
            rows = conn.execute(select(table).where(table.c.account_id == account_id)
                                .order_by(table.c.id)).all()
            parts.append(repr([tuple(r) for r in rows]))
    return json.dumps([_rows(p, account_id), parts])


def test_the_written_table_is_what_the_routes_declare(app: FastAPI) -> None:
    declared = {f"{'|'.join(m for m in d.methods if m != 'HEAD')} {d.path}": d
                for d in declarations(app)}
    assert {k for k, d in declared.items() if d.public} == PUBLIC
    written = {**{k: permission for k, (permission, _) in ROUTES.items()}, **IDENTITY_ROUTES}
    assert {k: d.permission for k, d in declared.items() if not d.public} == written


def _refused(r: httpx.Response, permission: Permission) -> str | None:
    """None if `r` is the 403 naming `permission`, else what is wrong with it."""
    if r.status_code != 403:
        return f"{r.status_code} (expected 403) {r.text[:160]}"
    error = r.json()["error"]
    if (error["code"], error["permission"]) != ("forbidden", permission.value):
        return f"403 but {error}"
    return None


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_every_role_on_its_own_and_another_account(
    route: str, platform: Platform, app: FastAPI, client: TestClient
) -> None:
    permission, ok = ROUTES[route]
    method, template = route.split(" ", 1)
    named = "{" in template  # the path names a resource
    wrong: list[str] = []
    for role in Role:
        for side in ("own", "other"):
            own, other = _account(platform, "Own"), _account(platform, "Other")
            target = own if side == "own" else other
            who = Caller(region="us", account_id=own.account_id, token_id="t", role=role.value)
            app.dependency_overrides[caller] = lambda who=who: who
            path = template.format(**target.path_params(route))
            body = BODIES.get(route, lambda _: None)(who)
            if route == "DELETE /v1/account":
                body = {"confirm": target.account_id}
            before = _fingerprint(platform, target.account_id)
            r = client.request(method, path, json=body)

            allowed = has_permission(role, permission)
            case = f"{role.value:8} {side:5}: "
            if not allowed:
                problem = _refused(r, permission)
            else:
                expected = (ok if side == "own" else 404 if named
                            else 409 if route == "DELETE /v1/account" else ok)
                problem = (None if r.status_code == expected else
                           f"{r.status_code} (expected {expected}) {r.text[:160]}")
                if expected == 404 and not problem and r.json()["error"]["code"] != "not_found":
                    problem = f"404 but {r.text[:160]}"
            if problem:
                wrong.append(case + problem)
                continue
            # Refused, or aimed at another account: the target account is exactly as it was.
            if not allowed or side == "other":
                if _fingerprint(platform, target.account_id) != before:
                    wrong.append(case + "changed the target account")
            # No answer carries another account's ids, beyond those the request itself named.
            asked = path + json.dumps(body)
            leaked = {i for i in other.ids() if i in r.text and i not in asked}
            if leaked:
                wrong.append(case + f"answered another account's ids {leaked}: {r.text[:300]}")
    assert not wrong, f"{route}:\n" + "\n".join(wrong)


@pytest.mark.parametrize("route", sorted(IDENTITY_ROUTES))
def test_identity_routes_refuse_every_role_without_the_permission(
    route: str, platform: Platform, app: FastAPI, client: TestClient
) -> None:
    permission = IDENTITY_ROUTES[route]
    method, template = route.split(" ", 1)
    own, other = _account(platform, "Own"), _account(platform, "Other")
    wrong = []
    for role in (r for r in Role if not has_permission(r, permission)):
        for side, target in (("own", own), ("other", other)):
            who = Caller(region="us", account_id=own.account_id, token_id="t", role=role.value)
            app.dependency_overrides[caller] = lambda who=who: who
            path = template.format(member_id=f"member-of-{target.account_id}",
                                   token_id=f"token-of-{target.account_id}",
                                   request_id=f"request-of-{target.account_id}",
                                   grant_id=f"us_grant-of-{target.account_id}",
                                   sink_id=f"sink-of-{target.account_id}", seq=1)
            problem = _refused(client.request(method, path, json={}), permission)
            if problem:
                wrong.append(f"{role.value:8} {side:5}: {problem}")
    assert not wrong, f"{route}:\n" + "\n".join(wrong)
