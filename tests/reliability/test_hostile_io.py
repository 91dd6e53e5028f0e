"""Hostile export/import/revision requests against a real ``dspex-notebook serve``: each gets
its precise status, none changes the store, and the server keeps answering."""

from __future__ import annotations

from hostile_cases import S, call, channel, io_attacks, ping, serve, snapshot, victim_setup

from dspex_notebook._proto import snakepit_bridge_pb2 as pb

VICTIM = "victim"


async def test_hostile_io_requests_are_refused_and_change_nothing(tmp_path):
    with serve(tmp_path, "--db", str(tmp_path / "store.sqlite3")) as srv:
        ch = channel(srv)
        try:
            for method, body in victim_setup(VICTIM):
                code, details, _ = await call(ch, srv, method, body)
                assert code is S.OK, (method, code, details)
            before = await snapshot(ch, srv, VICTIM)
            wrong = []
            for label, method, body, expected in io_attacks(VICTIM):
                code, details, _ = await call(ch, srv, method, body)
                if code is not expected:
                    wrong.append((label, expected, code, details[:200]))
                await ping(ch, srv)  # still serving after each
            assert not wrong, wrong
            assert await snapshot(ch, srv, VICTIM) == before, "a refused call changed the store"
            # and the real thing still works afterwards
            code, details, reply = await call(ch, srv, "ExportVariables", pb.ExportVariablesRequest(
                session_id=VICTIM).SerializeToString())
            assert code is S.OK, details
            assert pb.ExportVariablesResponse.FromString(reply).variable_count == 4
            assert srv.alive()
        finally:
            await ch.close()
