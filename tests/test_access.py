"""Access control through the real server (memory and SQLite): principals from a principals
file, session ownership and patterns, variable rules per permission, cross-session access by
id only where a rule allows it, revoking observe ends a watch, a revoke racing a write."""

from __future__ import annotations

import asyncio
import contextlib
import json

import grpc
import pytest
from backends import KINDS, server_of

import dspex_notebook as dn
from dspex_notebook._wire.client import insecure_channel
from dspex_notebook.server.principals import load_principals
from dspex_notebook.testing import running_server

TOKENS = {"alice": "alice-token-0123456789", "bob": "bob-token-0123456789ab",
          "admin": "admin-token-0123456789"}


def principals_file(tmp_path, fmt="yaml"):
    (tmp_path / "bob.token").write_text(TOKENS["bob"] + "\n")
    doc = {"principals": [
        {"name": "alice", "token": TOKENS["alice"], "sessions": ["alice_*", "shared"]},
        {"name": "bob", "token_file": "bob.token", "sessions": ["bob_*", "shared"]},
        {"name": "admin", "token": TOKENS["admin"], "sessions": ["admin_*"]},
    ]}
    path = tmp_path / f"principals.{fmt}"
    if fmt == "json":
        path.write_text(json.dumps(doc))
    else:
        import yaml

        path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture(params=KINDS)
def srv(request, tmp_path):
    with server_of(request.param, request, tmp_path,
                   principals=load_principals(principals_file(tmp_path))) as server:
        yield server


@contextlib.asynccontextmanager
async def as_(server, principal, session_id):
    ctx = dn.SessionContext(session_id, insecure_channel(server.address),
                            token=TOKENS[principal], close_channel=True, coherent_cache=False)
    try:
        yield await ctx.initialize()
    finally:
        await ctx.close()


# ----------------------------------------------------------------------------------------------
# principals and sessions


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_principals_file_loads(tmp_path, fmt):
    found = load_principals(principals_file(tmp_path, fmt))
    assert [(p.name, p.token, p.sessions) for p in found] == [
        ("alice", TOKENS["alice"], ("alice_*", "shared")),
        ("bob", TOKENS["bob"], ("bob_*", "shared")),
        ("admin", TOKENS["admin"], ("admin_*",))]


async def test_unauthenticated_is_refused(srv):
    for token in (None, "not-a-token-of-anyone"):
        ctx = dn.SessionContext("alice_x", insecure_channel(srv.address), token=token,
                                close_channel=True, coherent_cache=False)
        with pytest.raises(dn.AuthenticationError):
            await ctx.initialize()
        await ctx.close()


async def test_a_principal_creates_only_sessions_its_patterns_allow(srv):
    async with as_(srv, "alice", "alice_1") as s:
        assert (await s.get_session_info())["session_id"] == "alice_1"
    for name in ("admin_x", "bob_1", "other"):
        with pytest.raises(dn.AccessDenied, match=r"may not create session .*patterns"):
            async with as_(srv, "alice", name):
                pass


async def test_wrong_principal_cannot_use_a_session(srv):
    async with as_(srv, "alice", "alice_1") as a:
        await a.register_variable("secret", "integer", 7)
        ctx = dn.SessionContext("alice_1", insecure_channel(srv.address), token=TOKENS["bob"],
                                close_channel=True, coherent_cache=False)
        try:
            with pytest.raises(dn.AccessDenied, match="may not use session 'alice_1'"):
                await ctx.initialize()
            with pytest.raises(dn.AccessDenied):
                await ctx._bridge.get_variable("alice_1", "secret")
        finally:
            await ctx.close()


async def test_a_shared_session_is_joined_by_principals_whose_patterns_allow_it(srv):
    async with as_(srv, "alice", "shared") as a, as_(srv, "bob", "shared") as b:
        await a.register_variable("n", "integer", 1)
        assert await b.get_variable("n") == 1  # bob joined alice's session (both may)
        assert [x["session_id"] for x in await b._bridge.list_sessions()] == ["shared"]
        with pytest.raises(dn.AccessDenied, match="only the principal that created"):
            await b.cleanup()  # joining is not owning
        with pytest.raises(dn.AccessDenied):
            async with as_(srv, "admin", "shared"):
                pass


# ----------------------------------------------------------------------------------------------
# the authorization matrix: each permission granted and denied, by id from another session

PERMS = ("read", "write", "observe", "optimize")


async def _attempt(other, var_id, permission):
    """Try ``permission`` on ``var_id`` from session ``other``; True when it was allowed."""
    try:
        if permission == "read":
            await other.get_variable(var_id, bypass_cache=True)
        elif permission == "write":
            await other.set_variable(var_id, 0.25)
        elif permission == "observe":
            watch = other.watch_variable(var_id, include_initial=True)
            try:
                update = await asyncio.wait_for(watch.__anext__(), 30)
                assert update.kind == "initial" and update.variable_id == var_id
            finally:
                await watch.aclose()
        else:
            await other.start_optimization(var_id, "grid_search", {"n_points": 3},
                                           max_iterations=3)
            await other.stop_optimization(var_id)
    except dn.AccessDenied:
        return False
    return True


@pytest.mark.parametrize("granted", [(), *[(p,) for p in PERMS], PERMS])
async def test_each_permission_granted_and_denied(srv, granted):
    async with as_(srv, "alice", "alice_owner") as owner, as_(srv, "bob", "bob_1") as other:
        var_id = await owner.register_variable("t", "float", 0.5,
                                               constraints={"min": 0.0, "max": 1.0})
        if granted:
            await owner.set_variable_permissions(
                "t", [{"session_pattern": "bob_*", "permissions": list(granted)}])
        for perm in PERMS:
            assert await other.check_variable_access(var_id, perm) is (perm in granted), perm
            assert await _attempt(other, var_id, perm) is (perm in granted), perm
            assert await owner.check_variable_access("t", perm)  # the owner has everything
        if "write" not in granted:
            assert await owner.get_variable("t", bypass_cache=True) == 0.5


async def test_cross_session_access_is_by_id_only(srv):
    async with as_(srv, "alice", "alice_owner") as owner, as_(srv, "bob", "bob_1") as other:
        var_id = await owner.register_variable("shared_x", "integer", 3)
        await owner.set_variable_permissions("shared_x", [{"session_pattern": "any",
                                                           "permissions": ["read"]}])
        assert await other.get_variable(var_id) == 3
        with pytest.raises(dn.VariableNotFoundError):  # a name is this session's name
            await other.get_variable("shared_x")
        # another session's value is never cached under this session's names
        await other.register_variable("shared_x", "integer", 100)
        assert await other.get_variable("shared_x") == 100
        assert await other.get_variable(var_id) == 3
        assert [v.name for v in await other.list_variables()] == ["shared_x"]
        got = await other.get_variables([var_id, "shared_x"])
        assert got == {var_id: 3, "shared_x": 100}


async def test_a_session_named_admin_gains_nothing(srv):
    async with as_(srv, "alice", "alice_owner") as owner:
        var_id = await owner.register_variable("api_key", "string", "s3cret")
        await owner.set_variable_permissions("api_key", [
            {"session_pattern": "admin_*", "permissions": ["read", "write", "optimize"]}])
        with pytest.raises(dn.AccessDenied):  # bob cannot name a session admin_x
            async with as_(srv, "bob", "admin_x"):
                pass
        async with as_(srv, "bob", "bob_admin_x") as bob:
            assert not await bob.check_variable_access(var_id, "read")
            with pytest.raises(dn.AccessDenied, match="no 'read' permission"):
                await bob.get_variable(var_id)
        async with as_(srv, "admin", "admin_x") as admin:  # the real admin may
            assert await admin.get_variable(var_id) == "s3cret"


async def test_rules_may_also_require_the_principal(srv):
    async with as_(srv, "alice", "shared") as owner:
        var_id = await owner.register_variable("y", "integer", 1)
        async with as_(srv, "alice", "alice_2") as a2, as_(srv, "bob", "bob_2") as b2:
            await owner.set_variable_permissions("y", [
                {"session_pattern": "any", "permissions": ["read"],
                 "conditions": {"principal": "alice"}}])
            assert await a2.get_variable(var_id) == 1
            with pytest.raises(dn.AccessDenied):
                await b2.get_variable(var_id)


async def test_time_window_conditions(srv):
    async with as_(srv, "alice", "alice_owner") as owner, as_(srv, "bob", "bob_1") as other:
        var_id = await owner.register_variable("w", "integer", 1)
        await owner.set_variable_permissions("w", [
            {"session_pattern": "any", "permissions": ["read"],
             "conditions": {"not_after": "2000-01-01T00:00:00Z"}}])
        assert not await other.check_variable_access(var_id, "read")
        await owner.set_variable_permissions("w", [
            {"session_pattern": "any", "permissions": ["read"],
             "conditions": {"not_before": "2000-01-01T00:00:00+00:00",
                            "not_after": "2999-01-01T00:00:00Z"}}])
        assert await other.get_variable(var_id) == 1


async def test_only_the_owner_sets_or_reads_rules(srv):
    async with as_(srv, "alice", "alice_owner") as owner, as_(srv, "bob", "bob_1") as other:
        var_id = await owner.register_variable("z", "integer", 1)
        await owner.set_variable_permissions("z", {"session_pattern": "any",
                                                   "permissions": ["read", "write"]})
        assert await owner.get_variable_permissions("z") == [
            {"session_pattern": "any", "permissions": ["read", "write"], "conditions": {}}]
        with pytest.raises(dn.AccessDenied, match="only the owning session"):
            await other.set_variable_permissions(var_id, [])
        with pytest.raises(dn.AccessDenied, match="only the owning session"):
            await other.get_variable_permissions(var_id)
        with pytest.raises(dn.AccessDenied):  # delete stays with the owner
            await other.delete_variable(var_id)
        assert await owner.check_variable_access("z", "write", session="bob_9")
        await owner.set_variable_permissions("z", [])
        assert await owner.get_variable_permissions("z") == []
        assert not await owner.check_variable_access("z", "read", session="bob_1")


async def test_rules_go_with_the_variable(srv):
    async with as_(srv, "alice", "alice_owner") as owner, as_(srv, "bob", "bob_1") as other:
        var_id = await owner.register_variable("g", "integer", 1)
        await owner.set_variable_permissions("g", [{"session_pattern": "any",
                                                    "permissions": ["read"]}])
        await owner.delete_variable("g")
        new_id = await owner.register_variable("g", "integer", 2)
        assert new_id != var_id and await owner.get_variable_permissions("g") == []
        with pytest.raises(dn.AccessDenied):
            await other.get_variable(new_id)


async def test_rules_survive_a_restart(tmp_path):
    db = str(tmp_path / "s.db")
    principals = load_principals(principals_file(tmp_path))
    with running_server(db, principals=principals) as server:
        async with as_(server, "alice", "alice_owner") as owner:
            var_id = await owner.register_variable("p", "integer", 5)
            await owner.set_variable_permissions("p", [{"session_pattern": "bob_*",
                                                        "permissions": ["read"]}])
    with running_server(db, principals=principals) as server:
        async with as_(server, "bob", "bob_1") as other:
            assert await other.get_variable(var_id) == 5


# ----------------------------------------------------------------------------------------------
# observe: revoking ends live watches


async def test_revoking_observe_ends_the_watch_with_permission_denied(srv):
    async with as_(srv, "alice", "alice_owner") as owner, as_(srv, "bob", "bob_1") as other:
        var_id = await owner.register_variable("o", "integer", 0)
        await owner.set_variable_permissions("o", [{"session_pattern": "bob_*",
                                                    "permissions": ["observe"]}])
        watch = other.watch_variable(var_id)
        first = await asyncio.wait_for(watch.__anext__(), 30)
        assert (first.kind, first.value) == ("initial", 0)
        await owner.set_variable("o", 1)
        second = await asyncio.wait_for(watch.__anext__(), 30)
        assert (second.kind, second.value) == ("set", 1)
        await owner.set_variable_permissions("o", [])  # revoke
        with pytest.raises(dn.AccessDenied, match="no longer has 'observe' permission"):
            await asyncio.wait_for(watch.__anext__(), 30)
        with pytest.raises(StopAsyncIteration):  # it ended: no reconnect loop
            await asyncio.wait_for(watch.__anext__(), 30)


async def test_revoking_observe_at_the_wire_is_permission_denied(srv):
    from dspex_notebook._proto import snakepit_bridge_pb2 as pb
    from dspex_notebook._proto import snakepit_bridge_pb2_grpc as pb_grpc

    async with as_(srv, "alice", "alice_owner") as owner, as_(srv, "bob", "bob_1"):
        var_id = await owner.register_variable("o2", "integer", 0)
        await owner.set_variable_permissions("o2", [{"session_pattern": "any",
                                                     "permissions": ["observe"]}])
        channel = grpc.aio.insecure_channel(srv.address)
        try:
            stub = pb_grpc.BridgeServiceStub(channel)
            call = stub.Watch(pb.WatchRequest(session_id="bob_1", variable_identifiers=[var_id]),
                              metadata=(("authorization", f"Bearer {TOKENS['bob']}"),))
            created = await asyncio.wait_for(call.read(), 30)
            assert created.created
            await owner.set_variable_permissions("o2", [{"session_pattern": "any",
                                                         "permissions": ["read"]}])
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await asyncio.wait_for(call.read(), 30)
            assert info.value.code() is grpc.StatusCode.PERMISSION_DENIED
            assert "no longer has 'observe' permission" in info.value.details()
        finally:
            await channel.close()


async def test_deleting_the_variable_ends_another_sessions_watch(srv):
    async with as_(srv, "alice", "alice_owner") as owner, as_(srv, "bob", "bob_1") as other:
        var_id = await owner.register_variable("d", "integer", 0)
        await owner.set_variable_permissions("d", [{"session_pattern": "any",
                                                    "permissions": ["observe"]}])
        watch = other.watch_variable(var_id)
        assert (await asyncio.wait_for(watch.__anext__(), 30)).kind == "initial"
        await owner.delete_variable("d")
        await owner.register_variable("d", "integer", 99)  # same name, new id, no rules
        with pytest.raises(dn.AccessDenied, match="was deleted"):
            await asyncio.wait_for(watch.__anext__(), 30)


async def test_revoking_optimize_refuses_the_next_trial(srv):
    async with as_(srv, "alice", "alice_owner") as owner, as_(srv, "bob", "bob_1") as other:
        var_id = await owner.register_variable("k", "integer", 1, constraints={"min": 0, "max": 9})
        await owner.set_variable_permissions("k", [{"session_pattern": "bob_*",
                                                    "permissions": ["optimize"]}])
        await other.start_optimization(var_id, "grid_search", {"n_points": 5}, max_iterations=5)
        trial = await other.next_trial(var_id)
        assert trial is not None
        await owner.set_variable_permissions("k", [])
        with pytest.raises(dn.AccessDenied, match="no 'optimize' permission"):
            await other.report_trial(var_id, trial.id, 1.0)
        with pytest.raises(dn.AccessDenied):
            await other.next_trial(var_id)
        await owner.stop_optimization("k")  # the owner still may


async def test_a_watch_without_observe_is_refused(srv):
    async with as_(srv, "alice", "alice_owner") as owner, as_(srv, "bob", "bob_1") as other:
        var_id = await owner.register_variable("o3", "integer", 0)
        await owner.set_variable_permissions("o3", [{"session_pattern": "any",
                                                     "permissions": ["read"]}])
        watch = other.watch_variable(var_id)
        with pytest.raises(dn.AccessDenied, match="no 'observe' permission"):
            await asyncio.wait_for(watch.__anext__(), 30)


# ----------------------------------------------------------------------------------------------
# a revoke racing writes: never both


async def test_concurrent_revoke_and_writes_never_both_win(srv):
    async with as_(srv, "alice", "alice_owner") as owner, as_(srv, "bob", "bob_1") as other:
        var_id = await owner.register_variable("c", "integer", 0)
        for trial in range(15):
            await owner.set_variable_permissions("c", [{"session_pattern": "bob_*",
                                                        "permissions": ["write"]}])
            writes = [other._bridge.set_variable("bob_1", var_id, "integer", trial * 100 + i,
                                                 {}, None) for i in range(6)]
            revoke = owner._bridge.set_variable_permissions("alice_owner", "c", [])
            results = await asyncio.gather(revoke, *writes, return_exceptions=True)
            _, revoked_at = results[0]
            for result in results[1:]:
                if isinstance(result, BaseException):
                    assert isinstance(result, dn.AccessDenied), result
                else:
                    _, written_at = result
                    assert written_at < revoked_at  # a write allowed after the revoke: never
            with pytest.raises(dn.AccessDenied):
                await other.set_variable(var_id, -1)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_a_write_staged_before_a_revoke_fails_at_commit(tmp_path, kind):
    """The write's DocCompare on the rules document is checked in the backend transaction:
    a revoke committed between staging and committing the write makes the write fail."""
    from dspex_notebook import VariableSpec
    from dspex_notebook.server import Store, access
    from dspex_notebook.server.backends import MemoryBackend, SQLiteBackend
    from dspex_notebook.server.backends.base import CompareFailed
    from dspex_notebook.server.writes import stage_set

    backend = MemoryBackend() if kind == "memory" else SQLiteBackend(str(tmp_path / "s.db"))
    store = Store(backend)
    try:
        store.init_session("owner", "a", {})
        store.init_session("owner", "b", {})
        var = store.register("owner", "a", VariableSpec("x", "integer", 1))
        access.set_permissions(store, "owner", "a", "x", [{"session_pattern": "b",
                                                           "permissions": ["write"]}])
        commit, _ = stage_set(store.view, store.limits, store.view.sessions["b"], var.id, 2, {},
                              None, "owner", 0.0)
        assert [c.kind for c in commit.doc_compares] == [access.KIND]
        access.set_permissions(store, "owner", "a", "x", [])  # the revoke lands first
        with pytest.raises(CompareFailed):
            store._commit(commit, "owner")
        assert store.view.vars[var.id].value == 1
    finally:
        store.close()


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_io_api_registers_variables_and_their_rules_in_one_commit(tmp_path, kind):
    """What export/import uses: rules_of, checked_rules, stage_rules, stage_rules_for_put."""
    from dspex_notebook import VariableSpec
    from dspex_notebook.server import Store, access
    from dspex_notebook.server.backends import MemoryBackend, SQLiteBackend
    from dspex_notebook.server.writes import stage_register

    path = str(tmp_path / "s.db")
    backend = MemoryBackend() if kind == "memory" else SQLiteBackend(path)
    store = Store(backend)
    rules = access.checked_rules([{"session_pattern": "b*", "permissions": ["observe", "read"]}],
                                 "x")
    assert rules == [{"session_pattern": "b*", "permissions": ["read", "observe"],
                      "conditions": {}}]
    try:
        store.init_session("owner", "a", {})
        store.init_session("owner", "b", {})
        commit, created = stage_register(store.view, store.limits, store.view.sessions["a"],
                                         [VariableSpec("x", "integer", 1)], {}, {}, "owner", 0.0)
        access.stage_rules_for_put(commit, commit.puts[0], rules)
        revision = store._commit(commit, "owner")
        var = created[0]
        assert var.id and access.rules_of(store.view, var.id) == rules
        assert store.get("owner", "b", var.id).value == 1  # the rule works at once
        assert store.view.docs[(access.KIND, var.id)].mod_revision == revision
        if kind == "sqlite":  # the new variable's rules were persisted under its id
            store.close()
            store = Store(SQLiteBackend(path))
            assert access.rules_of(store.view, var.id) == rules
        commit2 = dn_commit()
        access.stage_rules(commit2, store.view, var.id, "a", [])
        store._commit(commit2, "owner")
        assert access.rules_of(store.view, var.id) == []
        commit3 = dn_commit()
        access.stage_rules(commit3, store.view, var.id, "a", rules)
        store._commit(commit3, "owner")
    finally:
        store.close()
    if kind == "sqlite":  # persisted under the assigned id
        again = Store(SQLiteBackend(path))
        try:
            assert access.rules_of(again.view, var.id) == rules
        finally:
            again.close()


def dn_commit():
    from dspex_notebook.server.backends import Commit

    return Commit()
