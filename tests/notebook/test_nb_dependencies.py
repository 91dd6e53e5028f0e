"""``%var deps`` / ``%var del --force`` in a real ``InteractiveShell`` and ``dspex-notebook
deps`` / ``delete`` through ``cli.main`` against a real server."""

from __future__ import annotations

import asyncio
import json
import os

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from dspex_notebook import cli
from dspex_notebook._display import DependencyTable
from dspex_notebook.notebook.magics import DspexMagicError, _help
from dspex_notebook.testing import running_server, session_for


def var(ip, line: str):
    return ip.run_line_magic("var", line)


def shown(ip, cell: str) -> tuple[object, str]:
    with capture_output() as out:
        result = ip.run_cell(cell)
    return result.error_in_exec, out.stdout + out.stderr


@pytest.fixture
def graph(ext):
    for name in ("base", "mid", "top"):
        var(ext, f"register {name} float 1.0")
    with capture_output() as out:
        var(ext, "deps mid --add base")
        var(ext, 'deps top --add mid --type constraint --metadata \'{"w": 2}\'')
    assert out.stdout.splitlines() == ["mid depends on base (data)",
                                       "top depends on mid (constraint)"]
    return ext


def test_deps_tables_in_html_and_text(graph):
    table = var(graph, "deps top")
    assert isinstance(table, DependencyTable)
    assert [(e["name"], e["type"], e["metadata"]) for e in table.entries] == [
        ("mid", "constraint", {"w": 2})]
    html = table._repr_html_()
    assert "<caption><b>what top depends on</b></caption>" in html and "<code>mid</code>" in html
    transitive = var(graph, "deps top --transitive")
    assert [(e["name"], e["depth"]) for e in transitive.entries] == [("mid", 1), ("base", 2)]
    text = repr(transitive).splitlines()
    assert text[0] == "what top depends on (transitively):"
    assert text[1].split() == ["name", "type", "depth", "via", "metadata"]
    assert text[3].split() == ["mid", "constraint", "1", "top", "w=2"]
    dependents = var(graph, "deps base --dependents --transitive")
    assert [e["name"] for e in dependents.entries] == ["mid", "top"]
    assert repr(var(graph, "deps top --dependents")) == "what depends on top: nothing"
    assert "nothing" in var(graph, "deps top --dependents")._repr_html_()


def test_deps_errors_are_one_line(graph):
    error, out = shown(graph, "%var deps base --add top")
    assert isinstance(error, DspexMagicError)
    assert out.strip() == ("InvalidArgument: dependency would create a cycle: "
                           "base → top → mid → base")
    error, out = shown(graph, "%var deps base --add nope")
    assert isinstance(error, DspexMagicError) and "nope" in out and out.count("\n") == 1
    error, out = shown(graph, "%var deps base --add mid --metadata '[1]'")
    assert isinstance(error, DspexMagicError) and "JSON object" in out
    with pytest.raises(UsageError):
        var(graph, "deps")
    with pytest.raises(UsageError):
        var(graph, "deps top --add a --remove b")


def test_remove_and_forced_delete(graph):
    error, out = shown(graph, "%var del base")
    assert isinstance(error, DspexMagicError) and out.count("\n") == 1
    assert "'base' cannot be deleted: 'mid' depends on it" in out and "%var del --force" in out
    with capture_output() as out:
        var(graph, "deps top --remove mid")
    assert out.stdout == "top no longer depends on mid\n"
    assert var(graph, "deps top").entries == []
    var(graph, "del --force base")
    assert var(graph, "deps mid").entries == []
    assert "%var deps NAME --add OTHER" in _help("deps") and "--dependents" in _help("deps")


# ----------------------------------------------------------------------------------------------
# the CLI


@pytest.fixture
def published():
    with running_server(os.environ["DSPEX_DB"], write_runtime_file=True) as srv:
        async def fill() -> None:
            async with session_for(srv, "default") as ctx:
                for name in ("a", "b", "c"):
                    await ctx.register_variable(name, "float", 1.0)

        asyncio.run(fill())
        yield srv


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_deps_and_delete(published, capsys):
    assert run(capsys, "deps", "b", "--add", "a", "-q") == (0, "b depends on a (data)\n", "")
    code, out, _ = run(capsys, "deps", "c", "--add", "b", "--type", "optimization",
                       "--metadata", '{"lr": 0.1}', "-q")
    assert code == 0
    code, out, _ = run(capsys, "deps", "c", "--transitive", "--json", "-q")
    assert code == 0
    assert [(e["name"], e["type"], e["depth"], e["metadata"]) for e in json.loads(out)] == [
        ("b", "optimization", 1, {"lr": 0.1}), ("a", "data", 2, {})]
    code, out, _ = run(capsys, "deps", "a", "--dependents", "-q")
    assert code == 0 and out.splitlines()[0] == "what depends on a:"
    assert out.splitlines()[3].split() == ["b", "data", "1", "a"]
    code, out, err = run(capsys, "deps", "a", "--add", "c", "-q")
    assert (code, out) == (1, "") and err == (
        "dspex-notebook deps: InvalidArgument: dependency would create a cycle: a → c → b → a\n")
    code, out, err = run(capsys, "delete", "a", "-q")
    assert code == 1 and err.count("\n") == 1 and "'b' depends on it" in err
    assert run(capsys, "delete", "a", "--force", "-q") == (0, "a deleted\n", "")
    code, out, _ = run(capsys, "deps", "b", "-q")
    assert (code, out) == (0, "what b depends on: nothing\n")
    assert run(capsys, "deps", "c", "--remove", "b", "-q") == (0, "c no longer depends on b\n", "")


# ----------------------------------------------------------------------------------------------
# the dependency-graph figure (issue 13 item 4)


def test_layered_layout_and_figure_draw_the_graph():
    from dspex_notebook.plotting.graph import EDGE_COLORS, dependency_figure, layered_layout

    ups = [{"name": "b", "type": "data", "depth": 1, "via": "c"},
           {"name": "x", "type": "constraint", "depth": 1, "via": "c"},
           {"name": "a", "type": "data", "depth": 2, "via": "b"}]
    downs = [{"name": "d", "type": "optimization", "depth": 1, "via": "c"}]
    layout = layered_layout("c", ups, downs)
    assert layout.positions == {"c": (0.0, 0.0), "b": (-1.0, 0.5), "x": (-1.0, -0.5),
                                "a": (-2.0, 0.0), "d": (1.0, 0.0)}
    assert layout.edges == [("b", "c", "data"), ("x", "c", "constraint"), ("a", "b", "data"),
                            ("c", "d", "optimization")]  # arrows follow the data flow
    fig = dependency_figure("c", ups, downs)
    ax = fig.axes[0]
    labels = {t.get_text(): t.get_position() for t in ax.texts if t.get_text()}
    assert labels == layout.positions
    arrows = [(a.xyann, a.xy, a.arrow_patch.get_edgecolor()) for a in ax.texts
              if hasattr(a, "arrow_patch") and a.arrow_patch is not None]
    from matplotlib.colors import to_rgba

    assert sorted((src, dst, c) for src, dst, c in arrows) == sorted(
        (layout.positions[s], layout.positions[d], to_rgba(EDGE_COLORS[k]))
        for s, d, k in layout.edges)


def test_graph_from_the_magic(graph):
    from IPython.display import Image

    picture = var(graph, "deps mid --graph")
    assert isinstance(picture, Image) and picture.data[:8] == b"\x89PNG\r\n\x1a\n"


def test_graph_from_the_cli(published, capsys, tmp_path):
    run(capsys, "deps", "b", "--add", "a", "-q")
    out_file = tmp_path / "g.png"
    code, out, _ = run(capsys, "deps", "b", "--graph", str(out_file), "-q")
    assert code == 0 and out == f"b: 1 dependencies, 0 dependents -> {out_file}\n"
    assert out_file.read_bytes()[:4] == b"\x89PNG"
