"""Widget benchmark: server change -> widget value in the kernel, and the optimization panel
under a run writing ~50 trials a second.

Setting (one process, as in a kernel with an embedded server): a dspex server in a thread, the
"kernel" client on its own IO thread (a Portal, as the extension makes), and a writer client on
another IO thread (another user). Widgets use ipywidgets' test comm, so the kernel-side cost of
building and "sending" each update message is included; the browser's share is what the browser
tests print (tests/browser, ``server -> browser DOM``).

1. **latency**, p50/p99 over R rounds of N writes spaced 60 ms apart (slower than the
   binding's 20 Hz apply cap, so latency is measured, not coalescing): from just before the
   writer's ``set_variable`` to
   - ``write`` — the writer's call returning (baseline: one round trip);
   - ``watch`` — a plain ``Watch`` of the kernel client yielding the update (baseline: the
     floor a widget can reach);
   - ``widget`` — the bound slider's ``value`` trait changing on the kernel's IO thread.
   The three are measured on the same writes; ratio = widget / watch.
2. **panel**: a grid-search run whose objective sleeps 10 ms (≈ 50 trials/s with the
   driver's two commits per trial) for ``--seconds``,
   once without a panel (baseline trial rate) and once with an ``OptimizationPanel`` at 4 and
   at 10 fps on the kernel client; frames/s, refreshes/s, trials/s of the run, and how far the
   panel's trial buffer lags the server (sampled every 0.25 s): the lag must stay bounded, not
   grow with time.

    python benchmarks/widgets.py            # ~1.5 min
    python benchmarks/widgets.py --quick
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from typing import Any

from ipywidgets.widgets.tests.utils import setup_test_comm

from dspex_notebook._loop import Portal
from dspex_notebook._session import SessionContext
from dspex_notebook._wire.client import insecure_channel
from dspex_notebook.notebook.proxy import NotebookSession
from dspex_notebook.testing import running_server


def client(server: Any, sid: str) -> tuple[Portal, SessionContext]:
    portal = Portal(name="dspex-bench-io")

    async def make() -> SessionContext:
        ctx = SessionContext(sid, insecure_channel(server.address), token=server.token,
                             close_channel=True)
        return await ctx.initialize()

    return portal, portal.run(make())


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def latency(server: Any, rounds: int, n: int) -> None:
    from dspex_notebook.widgets import control_for

    kp, kctx = client(server, "bench-w")
    wp, wctx = client(server, "bench-w")
    kp.run(kctx.register_variable("x", "integer", 0, {"min": 0, "max": 10**9}, replace=True))
    binding = control_for(NotebookSession(kctx, kp), "x")
    seen_widget: dict[int, float] = {}
    seen_watch: dict[int, float] = {}
    binding.widget.observe(lambda c: seen_widget.setdefault(c["new"], time.perf_counter()), "value")

    async def watch_task() -> None:
        async for u in kctx.watch_variable("x", include_initial=False):
            seen_watch.setdefault(u.value, time.perf_counter())

    kp.submit(watch_task())
    while binding.status != "live":
        time.sleep(0.01)
    rows: dict[str, list[float]] = {"write": [], "watch": [], "widget": []}
    per_round: list[tuple[float, float, float]] = []
    value = 0
    for _r in range(rounds):
        w, a, g = [], [], []
        for _ in range(n):
            value += 1
            t0 = time.perf_counter()
            wp.run(wctx.set_variable("x", value))
            t1 = time.perf_counter()
            deadline = t1 + 5
            while (value not in seen_widget or value not in seen_watch) and time.perf_counter() < deadline:
                time.sleep(0.0002)
            w.append(t1 - t0)
            a.append(seen_watch.get(value, float("nan")) - t0)
            g.append(seen_widget.get(value, float("nan")) - t0)
            time.sleep(0.06)
        rows["write"] += w
        rows["watch"] += a
        rows["widget"] += g
        per_round.append((statistics.median(w), statistics.median(a), statistics.median(g)))
    binding.unlink()
    for portal, ctx in ((kp, kctx), (wp, wctx)):
        portal.run(ctx.close())
        portal.close()
    print(f"\n### Server change -> widget value in the kernel ({rounds} rounds x {n} writes)\n")
    print("| path | p50 ms | p99 ms | spread of round p50s ms | ratio to watch (p50) |")
    print("|---|---:|---:|---:|---:|")
    for i, key in enumerate(("write", "watch", "widget")):
        xs = [x * 1000 for x in rows[key]]
        meds = [r[i] * 1000 for r in per_round]
        ratio = statistics.median(r[i] / r[1] for r in per_round)
        print(f"| {key} | {statistics.median(xs):.2f} | {pct(xs, 0.99):.2f} | "
              f"{min(meds):.2f}–{max(meds):.2f} | {ratio:.2f} |")


def panel_run(server: Any, seconds: float, fps: float | None) -> dict[str, float]:
    from dspex_notebook.widgets import OptimizationPanel

    sid = f"bench-p-{fps}"
    dp, dctx = client(server, sid)  # the client evaluating the objective
    kp, kctx = client(server, sid)  # the notebook showing the panel
    dp.run(dctx.register_variable("x", "float", 0.0, {"min": 0.0, "max": 1.0}, replace=True))

    def objective(x: float) -> float:
        time.sleep(0.01)
        return -x

    n = int(seconds * 60) + 100
    dp.run(dctx.start_optimization("x", "grid_search", {"n_points": n}, max_iterations=n,
                                   objective=objective))
    panel = OptimizationPanel(NotebookSession(kctx, kp), "x", fps=fps) if fps else None
    lags: list[int] = []
    t0 = time.perf_counter()
    it0 = dp.run(dctx.get_optimization_status("x"))["iteration"]
    frames0 = panel.plot.frames if panel else 0
    ref0 = panel.refreshes if panel else 0
    while time.perf_counter() - t0 < seconds:
        time.sleep(0.25)
        if panel is not None:
            server_it = dp.run(dctx.get_optimization_status("x"))["iteration"]
            lags.append(server_it - len(panel.buffer))
    took = time.perf_counter() - t0
    it1 = dp.run(dctx.get_optimization_status("x"))["iteration"]
    out = {"trials_s": (it1 - it0) / took}
    if panel is not None:
        out.update(frames_s=(panel.plot.frames - frames0) / took,
                   refresh_s=(panel.refreshes - ref0) / took,
                   lag_max=max(lags), lag_first=statistics.median(lags[: len(lags) // 2]),
                   lag_last=statistics.median(lags[len(lags) // 2:]))
        panel.stop()
    dp.run(dctx.stop_optimization("x"))
    for portal, ctx in ((kp, kctx), (dp, dctx)):
        portal.run(ctx.close())
        portal.close()
    return out


def panel(server: Any, seconds: float) -> None:
    base = panel_run(server, seconds, None)
    rows = [(fps, panel_run(server, seconds, fps)) for fps in (4.0, 10.0)]
    print(f"\n### Optimization panel while a run writes ~50 trials/s ({seconds:.0f} s each)\n")
    print("| panel | run trials/s | ratio to no panel | frames/s | refreshes/s | "
          "lag p50 first half / second half (trials) | lag max |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(f"| none (baseline) | {base['trials_s']:.1f} | 1.00 | – | – | – | – |")
    for fps, r in rows:
        print(f"| {fps:.0f} fps | {r['trials_s']:.1f} | {r['trials_s'] / base['trials_s']:.2f} | "
              f"{r['frames_s']:.1f} | {r['refresh_s']:.1f} | {r['lag_first']:.0f} / "
              f"{r['lag_last']:.0f} | {r['lag_max']:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    setup_test_comm()
    rounds, n, seconds = (2, 30, 4.0) if args.quick else (5, 100, 12.0)
    print(f"python threads at start: {threading.active_count()}")
    with running_server() as server:
        latency(server, rounds, n)
        panel(server, seconds)


if __name__ == "__main__":
    main()
