"""API keys: tokens, hashed storage, revocation, scopes, the access policy, the local admin key and
the `partnermatch keys` commands."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from partnermatch.cli import app
from serving.keys import (
    AccessPolicy,
    KeyStore,
    Scope,
    ensure_local_key,
    parse_scopes,
    parse_token,
    secret_digest,
)
from serving.ratelimit import RateLimit
from serving.stores import sqlite_url, upgrade_database


@pytest.fixture
def store(tmp_path: Path) -> KeyStore:
    upgrade_database(sqlite_url(tmp_path / "keys.sqlite"))
    return KeyStore(sqlite_url(tmp_path / "keys.sqlite"))


def test_a_created_key_authenticates_and_only_its_hash_is_stored(store: KeyStore, tmp_path: Path) -> None:
    issued = store.create("crm", {Scope.ROUTE}, RateLimit(per_second=5, burst=10))
    key_id, secret = parse_token(issued.token) or ("", "")
    assert key_id == issued.key.key_id
    authenticated = store.authenticate(issued.token)
    assert authenticated is not None
    assert (authenticated.name, authenticated.scopes) == ("crm", frozenset({Scope.ROUTE}))
    assert authenticated.rate_limit == RateLimit(per_second=5, burst=10)
    stored = sqlite3.connect(tmp_path / "keys.sqlite").execute("SELECT * FROM api_keys").fetchall()
    assert secret not in repr(stored)
    assert secret_digest(secret) in repr(stored)


def test_wrong_malformed_and_revoked_tokens_are_refused(store: KeyStore) -> None:
    issued = store.create("crm", {Scope.ROUTE})
    other = store.create("other", {Scope.ROUTE})
    key_id, _ = parse_token(issued.token) or ("", "")
    _, other_secret = parse_token(other.token) or ("", "")
    assert store.authenticate(f"pm_{key_id}_{other_secret}") is None  # the id of one, the secret of another
    assert store.authenticate("pm_0123456789abcdef_" + "x" * 43) is None
    assert store.authenticate("not-a-token") is None
    assert store.revoke(issued.key.key_id).revoked_at is not None
    assert store.authenticate(issued.token) is None
    assert store.authenticate(other.token) is not None
    with pytest.raises(ValueError, match="no API key"):
        store.revoke("0000000000000000")


def test_a_key_read_recently_is_not_read_again_until_the_recheck_time(tmp_path: Path) -> None:
    now = [0.0]
    url = sqlite_url(tmp_path / "keys.sqlite")
    upgrade_database(url)
    service, admin = KeyStore(url, recheck_seconds=1.0, clock=lambda: now[0]), KeyStore(url)
    issued = admin.create("crm", {Scope.ROUTE})
    assert service.authenticate(issued.token) is not None
    admin.revoke(issued.key.key_id)
    assert service.authenticate(issued.token) is not None  # as read at 0 s, not read again
    now[0] = 1.0
    assert service.authenticate(issued.token) is None
    wrong = issued.token[:-4] + "AAAA"
    assert service.authenticate(wrong) is None


def test_admin_grants_every_scope(store: KeyStore) -> None:
    route_only = store.create("crm", {Scope.ROUTE}).key
    admin = store.create("ops", {Scope.ADMIN}).key
    assert route_only.grants(Scope.ROUTE) and not route_only.grants(Scope.READ_DECISIONS)
    assert all(admin.grants(scope) for scope in Scope)


def test_parse_scopes_names_the_unknown_one() -> None:
    assert parse_scopes("route, read_decisions") == {Scope.ROUTE, Scope.READ_DECISIONS}
    with pytest.raises(ValueError, match="telepathy"):
        parse_scopes("route,telepathy")
    with pytest.raises(ValueError, match="no scopes"):
        parse_scopes(" , ")


def test_access_policy_matches_whole_path_segments() -> None:
    policy = AccessPolicy(
        public_paths=frozenset({"/", "/docs"}),
        public_prefixes=("/assets",),
        scoped_prefixes=(("/decisions", Scope.READ_DECISIONS),),
    )
    assert policy.is_public("/") and policy.is_public("/assets/ui.js") and policy.is_public("/docs")
    assert not policy.is_public("/route") and not policy.is_public("/docs/x") and not policy.is_public("/assetsx")
    assert policy.scope_for("/decisions/abc") == policy.scope_for("/decisions") == Scope.READ_DECISIONS
    assert policy.scope_for("/decisionsx") is None


def test_local_key_is_created_once_private_and_reused(store: KeyStore, tmp_path: Path) -> None:
    token_file = tmp_path / "mlruns" / "api-key"
    created = ensure_local_key(store, token_file)
    assert created is not None and created.created
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    key = store.authenticate(token_file.read_text().strip())
    assert key is not None and key.scopes == frozenset(Scope)
    again = ensure_local_key(store, token_file)
    assert again is not None and not again.created
    assert len(store.all_keys()) == 1


def test_no_local_key_beside_keys_someone_else_manages(store: KeyStore, tmp_path: Path) -> None:
    store.create("crm", {Scope.ROUTE})
    assert ensure_local_key(store, tmp_path / "api-key") is None
    assert not (tmp_path / "api-key").exists()


def test_keys_commands_create_list_revoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARTNERMATCH_DATABASE_URL", sqlite_url(tmp_path / "keys.sqlite"))
    runner = CliRunner()
    created = runner.invoke(app, ["keys", "create", "--name", "crm", "--scopes", "route,read_decisions"])
    assert created.exit_code == 0, created.output
    token = created.stdout.strip()
    key_id, _ = parse_token(token) or ("", "")
    listed = runner.invoke(app, ["keys", "list"])
    assert listed.exit_code == 0
    assert token not in listed.stdout
    assert f'"key_id": "{key_id}"' in listed.stdout
    assert '"read_decisions"' in listed.stdout
    assert runner.invoke(app, ["keys", "revoke", key_id]).exit_code == 0
    assert KeyStore(sqlite_url(tmp_path / "keys.sqlite")).authenticate(token) is None
    assert runner.invoke(app, ["keys", "revoke", "0000000000000000"]).exit_code == 2
    assert runner.invoke(app, ["keys", "create", "--name", "x", "--scopes", "telepathy"]).exit_code == 2
