"""Rich display of variables for JupyterLab (HTML) and plain terminals (text)."""

from __future__ import annotations

from html import escape
from typing import Any

from ._types import Variable


def short(value: Any, width: int = 60) -> str:
    """A one-line repr; arrays as ``float32[768] [0.1, 0.2, ...]``."""
    shape = getattr(value, "shape", None)
    if shape is not None and hasattr(value, "dtype"):
        head = ", ".join(f"{x:.4g}" if isinstance(x, float) else repr(x) for x in value.ravel()[:4].tolist())
        more = ", ..." if value.size > 4 else ""
        text = f"{value.dtype}{list(shape)} [{head}{more}]"
    else:
        text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _constraints(c: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in c.items())


class VariableTable:
    """A list of variables shown as a table (``%var`` / ``%var list``)."""

    columns = ("name", "type", "value", "version", "constraints")

    def __init__(self, variables: list[Variable]) -> None:
        self.variables = list(variables)

    def rows(self) -> list[tuple[str, str, str, str, str]]:
        return [
            (v.name, v.type, short(v.value), str(v.version), _constraints(v.constraints))
            for v in self.variables
        ]

    def __len__(self) -> int:
        return len(self.variables)

    def __repr__(self) -> str:
        if not self.variables:
            return "(no variables)"
        rows = [self.columns, *self.rows()]
        widths = [max(len(r[i]) for r in rows) for i in range(len(self.columns))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        if not self.variables:
            return "<em>(no variables)</em>"
        head = "".join(f"<th style='text-align:left'>{c}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td style='text-align:left'><code>{escape(cell)}</code></td>"
                             for cell in row) + "</tr>"
            for row in self.rows()
        )
        return f"<table class='dspex-variables'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def _repr_markdown_(self) -> str:
        if not self.variables:
            return "*(no variables)*"
        esc = lambda s: s.replace("|", "\\|")  # noqa: E731
        lines = ["| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(f"`{esc(c)}`" if c else "" for c in row) + " |" for row in self.rows()]
        return "\n".join(lines)


_STAT_COLUMNS = ("read_count", "write_count", "cache_hits", "cache_misses", "cache_hit_rate",
                 "avg_read_latency_ms", "avg_write_latency_ms", "watchers", "version",
                 "history_length")


def _stat(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return "" if value is None else str(value)


class StatsTable:
    """``get_variable_stats`` as a table: one row per variable (``%var stats``, CLI ``stats``)."""

    def __init__(self, stats: dict[str, Any], name: str | None = None) -> None:
        self.stats = stats
        if name is not None:
            self.rows_by_name = {name: stats}
        else:
            self.rows_by_name = dict(stats.get("variables", {}))
            self.rows_by_name["(all)"] = stats

    def rows(self) -> list[tuple[str, ...]]:
        return [(name, *(_stat(s.get(c)) for c in _STAT_COLUMNS))
                for name, s in self.rows_by_name.items()]

    def __repr__(self) -> str:
        rows = [("name", *_STAT_COLUMNS), *self.rows()]
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head = "".join(f"<th style='text-align:left'>{escape(c)}</th>" for c in ("name", *_STAT_COLUMNS))
        body = "".join("<tr>" + "".join(f"<td style='text-align:left'>{escape(c)}</td>" for c in row)
                       + "</tr>" for row in self.rows())
        return f"<table class='dspex-stats'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class OptimizationStatus:
    """``get_optimization_status`` for people (``%var status``, CLI ``status``)."""

    def __init__(self, status: dict[str, Any], trials: list[dict[str, Any]] | None = None) -> None:
        self.status = status
        self.trials = trials or []

    def lines(self) -> list[str]:
        s = self.status
        if s.get("optimization_id") is None:
            return [f"{s.get('variable', 'the variable')}: never optimized"]
        state = "running" if s["is_optimizing"] else f"finished ({s.get('stop_reason')})"
        if s["is_optimizing"] and s.get("waiting"):
            state += ", waiting for a trial report" if s.get("waiting_for_trial") else ", waiting"
        budget = s.get("max_iterations")
        lines = [
            f"{s['variable']}: {s['optimizer']} run {s['optimization_id']} — {state}",
            f"iteration {s['iteration']}" + (f" of {budget}" if budget else "")
            + f", {s.get('direction')} {s.get('metric')}",
        ]
        if s.get("best_value") is not None:
            best = _stat(s.get("best_objective"))
            value = s["best_value"]
            shown = f"{value:.6g}" if isinstance(value, float) else short(value)
            lines.append(f"best {shown}  {s.get('metric')} = {best}")
        for t in self.trials[-5:]:
            value = f"{t['value']:.6g}" if isinstance(t["value"], float) else short(t["value"])
            lines.append(f"  #{t['iteration']:<4} {value:<12} {t['state']:<9} "
                         f"{_stat(t.get('objective'))}")
        return lines

    def __repr__(self) -> str:
        return "\n".join(self.lines())

    def _repr_html_(self) -> str:
        head, *rest = self.lines()
        body = "<br>".join(escape(line) for line in rest)
        return f"<div class='dspex-optimization'><b>{escape(head)}</b><br><code>{body}</code></div>"


class HistoryTable:
    """``get_variable_history`` as a table, newest first (``%var history``, CLI ``history``)."""

    columns = ("version", "value", "updated_at", "updated_by", "revision", "metadata")

    def __init__(self, name: str, entries: list[dict[str, Any]]) -> None:
        self.name = name
        self.entries = list(entries)

    def rows(self) -> list[tuple[str, ...]]:
        out: list[tuple[str, ...]] = []
        for e in self.entries:
            when = e.get("updated_at")
            meta = e.get("metadata") or {}
            out.append((str(e["version"]), short(e["value"], 40),
                        when.strftime("%Y-%m-%d %H:%M:%S") if when is not None else "",
                        str(e.get("updated_by", "")), str(e.get("revision", "")),
                        _clip(", ".join(f"{k}={v}" for k, v in sorted(meta.items())), 40)))
        return out

    def __repr__(self) -> str:
        if not self.entries:
            return f"{self.name}: no history kept"
        rows = [self.columns, *self.rows()]
        widths = [max(len(r[i]) for r in rows) for i in range(len(self.columns))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head = "".join(f"<th style='text-align:left'>{c}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td style='text-align:left'><code>{escape(c)}</code></td>"
                                        for c in row) + "</tr>" for row in self.rows())
        return (f"<table class='dspex-history'><caption><b>{escape(self.name)}</b></caption>"
                f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


class ChangeSummary(dict[str, Any]):
    """An import or restore summary (the dict the API returns) that displays as a table of
    its ``details``: one row per variable with what happened and why."""

    def __init__(self, title: str, summary: dict[str, Any]) -> None:
        super().__init__(summary)
        self.title = title

    def rows(self) -> list[tuple[str, str, str]]:
        out = []
        for d in self.get("details", []):
            why = d.get("reason") or ""
            if not why and "to_version" in d:
                why = (f"version {d['from_version']} -> {d['to_version']}" if "from_version" in d
                       else f"back under its old id as version {d['to_version']}")
                if "value_of_version" in d:
                    why += f" (the value of version {d['value_of_version']})"
            out.append((str(d.get("name") or "-"), str(d["action"]), _clip(why, 100)))
        return out

    def headline(self) -> str:
        if "imported" in self:
            text = (f"{self['imported']} imported, {self['skipped']} skipped, "
                    f"{self['errors']} errors")
        else:
            text = (f"{len(self['set'])} set, {len(self['recreated'])} recreated, "
                    f"{len(self['deleted'])} deleted, {len(self['unchanged'])} unchanged")
        if self.get("dry_run"):
            return f"{self.title} (dry run, nothing changed): {text}"
        return f"{self.title}: {text}" + (f" at revision {self['revision']}"
                                          if self.get("revision") else "")

    def __repr__(self) -> str:
        rows = [("variable", "action", "why"), *self.rows()]
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                 for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join([self.headline(), *lines]) if self.rows() else self.headline()

    def _repr_html_(self) -> str:
        head = "".join(f"<th style='text-align:left'>{c}</th>" for c in ("variable", "action", "why"))
        body = "".join("<tr>" + "".join(f"<td style='text-align:left'>{escape(c)}</td>"
                                        for c in row) + "</tr>" for row in self.rows())
        return (f"<table class='dspex-summary'><caption><b>{escape(self.headline())}</b>"
                f"</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


class DependencyTable:
    """``get_dependencies`` / ``get_dependents`` as a table (``%var deps``, CLI ``deps``)."""

    columns = ("name", "type", "depth", "via", "metadata")

    def __init__(self, name: str, entries: list[dict[str, Any]], dependents: bool = False,
                 transitive: bool = False) -> None:
        self.name = name
        self.entries = list(entries)
        self.dependents = dependents
        self.transitive = transitive

    @property
    def title(self) -> str:
        scope = " (transitively)" if self.transitive else ""
        if self.dependents:
            return f"what depends on {self.name}{scope}"
        return f"what {self.name} depends on{scope}"

    def rows(self) -> list[tuple[str, ...]]:
        return [(str(e["name"]), str(e["type"]), str(e["depth"]), str(e["via"]),
                 _clip(", ".join(f"{k}={v!r}" for k, v in sorted(e["metadata"].items())), 40))
                for e in self.entries]

    def __len__(self) -> int:
        return len(self.entries)

    def __repr__(self) -> str:
        if not self.entries:
            return f"{self.title}: nothing"
        rows = [self.columns, *self.rows()]
        widths = [max(len(r[i]) for r in rows) for i in range(len(self.columns))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return f"{self.title}:\n" + "\n".join(lines)

    def _repr_html_(self) -> str:
        caption = f"<caption><b>{escape(self.title)}</b></caption>"
        if not self.entries:
            return (f"<table class='dspex-deps'>{caption}"
                    "<tbody><tr><td><em>nothing</em></td></tr></tbody></table>")
        head = "".join(f"<th style='text-align:left'>{c}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td style='text-align:left'><code>{escape(c)}</code></td>"
                                        for c in row) + "</tr>" for row in self.rows())
        return (f"<table class='dspex-deps'>{caption}<thead><tr>{head}</tr></thead>"
                f"<tbody>{body}</tbody></table>")
