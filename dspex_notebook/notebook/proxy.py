"""``session`` in the notebook: a SessionContext that lives on the IO thread.

The real :class:`~dspex_notebook.SessionContext` (and its grpc.aio channel) belongs to the
portal's loop. :class:`NotebookSession` offers the same API to cells, method by method (typed,
no reflection): each coroutine hops to the IO loop with ``asyncio.wrap_future``, so
``await session.get_variable("x")`` works with top-level await while the kernel loop stays
responsive. Cache hits are answered in the kernel thread without crossing threads. Watches are
created on the IO loop and wrapped in :class:`NotebookWatch`, whose iteration hops the same way.
A test checks that every public method of SessionContext has its twin here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, overload

from .._cache import MISS, VariableCache
from .._loop import Portal
from .._session import SessionContext
from .._types import Trial, Variable, VariableUpdate
from .._watch import Watch


class NotebookWatch:
    """A :class:`Watch` living on the IO thread, iterated from a cell."""

    def __init__(self, watch: Watch, portal: Portal) -> None:
        self.watch = watch
        self._portal = portal

    def __aiter__(self) -> NotebookWatch:
        return self

    async def __anext__(self) -> VariableUpdate:
        try:
            return await self._portal.call(self.watch.__anext__())
        except asyncio.CancelledError:  # the cell's loop was cancelled: stop the watch too
            self.close()
            raise

    async def aclose(self) -> None:
        await self._portal.call(self.watch.aclose())

    def close(self) -> None:
        self._portal.loop.call_soon_threadsafe(self.watch.close)

    async def __aenter__(self) -> NotebookWatch:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    @property
    def status(self) -> str:
        return self.watch.status

    def __repr__(self) -> str:
        return f"<NotebookWatch {self.watch.names!r} {self.status}>"


class NotebookSession:
    """Cell-facing proxy of a SessionContext running on a :class:`Portal`.

    :attr:`context` is the underlying SessionContext (use it only from the IO loop).
    """

    def __init__(self, context: SessionContext, portal: Portal) -> None:
        self.context = context
        self.portal = portal

    @property
    def session_id(self) -> str:
        return self.context.session_id

    # -- answered in this thread -----------------------------------------------------------

    async def get_variable(self, name: str, default: Any = None, bypass_cache: bool = False) -> Any:
        """See :meth:`SessionContext.get_variable`; cache hits do not leave this thread."""
        if not bypass_cache:
            value = self.context.cached_value(name)
            if value is not MISS:
                return value
        # after a miss here, don't look again on the IO thread (it would count a second miss)
        return await self.portal.call(self.context.get_variable(name, default, bypass_cache=True))

    def cached_value(self, name: str) -> Any:
        return self.context.cached_value(name)

    def get_cache_info(self) -> dict[str, Any]:
        return self.context.get_cache_info()

    def set_cache_config(self, ttl: float | None = None, max_size: int | None = None,
                         eviction_policy: str | None = None) -> None:
        self.context.set_cache_config(ttl, max_size, eviction_policy)

    def known_names(self) -> list[str]:
        """Variable names this client has seen (for tab completion; no round trip)."""
        return self.context.known_names()

    @property
    def cache(self) -> VariableCache:
        return self.context.cache

    @property
    def watch_status(self) -> str:
        return self.context.watch_status

    def on_watch_status(self, callback: Callable[[str], Any]) -> Callable[[], None]:
        """As :meth:`SessionContext.on_watch_status`; ``callback`` runs on the IO thread."""
        return self.context.on_watch_status(callback)

    # -- hop to the IO loop ------------------------------------------------------------------

    async def initialize(self, metadata: Mapping[str, str] | None = None, *,
                         create: bool = True) -> SessionContext:
        return await self.portal.call(self.context.initialize(metadata, create=create))

    async def close(self) -> None:
        await self.portal.call(self.context.close())

    async def cleanup(self) -> int:
        return await self.portal.call(self.context.cleanup())

    async def ping(self) -> dict[str, Any]:
        return await self.portal.call(self.context.ping())

    async def get_session_info(self) -> dict[str, Any]:
        return await self.portal.call(self.context.get_session_info())

    async def get_variable_info(self, name: str) -> Variable:
        return await self.portal.call(self.context.get_variable_info(name))

    async def get_variables(self, names: Iterable[str], defaults: Mapping[str, Any] | None = None,
                            include_metadata: bool = False,
                            include_stats: bool = False, *,
                            at_revision: int | None = None) -> dict[str, Any]:
        return await self.portal.call(self.context.get_variables(
            list(names), defaults, include_metadata, include_stats, at_revision=at_revision))

    async def list_variables(self, pattern: str | None = None) -> list[Variable]:
        return await self.portal.call(self.context.list_variables(pattern))

    async def register_variable(
        self, name: str, type: str, initial_value: Any,
        constraints: Mapping[str, Any] | None = None, metadata: Mapping[str, str] | None = None,
        dependencies: Iterable[str] | None = None,
        *, replace: bool = False,
    ) -> str:
        return await self.portal.call(self.context.register_variable(
            name, type, initial_value, constraints, metadata, dependencies, replace=replace))

    async def register_variables(self, variables: list[Mapping[str, Any]]) -> dict[str, str]:
        return await self.portal.call(self.context.register_variables(variables))

    async def apply_batch(self, registrations: list[Mapping[str, Any]],
                          updates: Mapping[str, Any] | None = None,
                          metadata: Mapping[str, str] | None = None) -> dict[str, str]:
        return await self.portal.call(self.context.apply_batch(registrations, updates, metadata))

    async def set_variable(
        self, name: str, value: Any, metadata: Mapping[str, str] | None = None,
        create_if_missing: bool = False, type_hint: str | None = None,
        *, expected_version: int | None = None,
    ) -> int:
        return await self.portal.call(self.context.set_variable(
            name, value, metadata, create_if_missing, type_hint, expected_version=expected_version))

    async def update_variables(self, updates: Mapping[str, Any],
                               metadata: Mapping[str, str] | None = None,
                               atomic: bool = True) -> dict[str, bool | str]:
        return await self.portal.call(self.context.update_variables(updates, metadata, atomic))

    async def delete_variable(self, name: str, force: bool = False) -> None:
        await self.portal.call(self.context.delete_variable(name, force))

    async def get_variable_stats(self, variable: str | None = None) -> dict[str, Any]:
        return await self.portal.call(self.context.get_variable_stats(variable))

    async def get_variable_history(self, variable: str, limit: int = 100, offset: int = 0,
                                   include_metadata: bool = True) -> list[dict[str, Any]]:
        return await self.portal.call(self.context.get_variable_history(
            variable, limit, offset, include_metadata))

    async def rollback_variable(self, variable: str, version: int,
                                reason: str | None = None) -> int:
        return await self.portal.call(self.context.rollback_variable(variable, version, reason))

    async def export_variables(self, format: str = "json", include_history: bool = False,
                               include_dependencies: bool = True,
                               filter_pattern: str | None = None) -> bytes:
        return await self.portal.call(self.context.export_variables(
            format, include_history, include_dependencies, filter_pattern))

    async def import_variables(self, data: bytes, format: str = "json",
                               merge_strategy: str = "replace", dry_run: bool = False, *,
                               allow_pickle: bool = False) -> dict[str, Any]:
        return await self.portal.call(self.context.import_variables(
            data, format, merge_strategy, dry_run, allow_pickle=allow_pickle))

    async def restore_session(self, revision: int, dry_run: bool = False) -> dict[str, Any]:
        return await self.portal.call(self.context.restore_session(revision, dry_run))

    # -- dependencies ------------------------------------------------------------------------

    async def add_dependency(self, from_variable: str, to_variable: str,
                             dependency_type: str = "data",
                             metadata: Mapping[str, Any] | None = None) -> None:
        await self.portal.call(self.context.add_dependency(from_variable, to_variable,
                                                           dependency_type, metadata))

    async def remove_dependency(self, from_variable: str, to_variable: str) -> None:
        await self.portal.call(self.context.remove_dependency(from_variable, to_variable))

    async def get_dependencies(self, variable: str,
                               include_transitive: bool = False) -> list[dict[str, Any]]:
        return await self.portal.call(self.context.get_dependencies(variable, include_transitive))

    async def get_dependents(self, variable: str,
                             include_transitive: bool = False) -> list[dict[str, Any]]:
        return await self.portal.call(self.context.get_dependents(variable, include_transitive))
    # -- access rules ----------------------------------------------------------------------

    async def set_variable_permissions(self, variable: str, rules: list[dict[str, Any]]) -> None:
        return await self.portal.call(self.context.set_variable_permissions(variable, rules))

    async def get_variable_permissions(self, variable: str) -> list[dict[str, Any]]:
        return await self.portal.call(self.context.get_variable_permissions(variable))

    async def check_variable_access(self, variable: str, permission: str, *,
                                    session: str | None = None) -> bool:
        return await self.portal.call(self.context.check_variable_access(
            variable, permission, session=session))

    async def explain_variable_access(self, variable: str, permission: str, *,
                                      session: str | None = None) -> tuple[bool, str]:
        return await self.portal.call(self.context.explain_variable_access(
            variable, permission, session=session))

    # -- optimization runs -----------------------------------------------------------------

    async def start_optimization(
        self, variable: str, optimizer_type: str = "bayesian",
        optimizer_config: Mapping[str, Any] | None = None, max_iterations: int = 100,
        convergence_threshold: float | None = 0.001, callback: Callable[..., Any] | None = None,
        *, objective: Callable[[Any], Any] | None = None, lease_seconds: float = 30.0,
    ) -> str:
        """As :meth:`SessionContext.start_optimization`; the run's driver (objective,
        callback) runs on the IO thread, so the cell returns at once and the kernel stays free."""
        return await self.portal.call(self.context.start_optimization(
            variable, optimizer_type, optimizer_config, max_iterations, convergence_threshold,
            callback, objective=objective, lease_seconds=lease_seconds))

    def register_objective(self, variable: str, objective: Callable[[Any], Any]) -> None:
        self.context.register_objective(variable, objective)

    async def register_python_optimizer(self, name: str, optimizer_class: type) -> None:
        await self.portal.call(self.context.register_python_optimizer(name, optimizer_class))

    async def stop_optimization(self, variable: str) -> None:
        await self.portal.call(self.context.stop_optimization(variable))

    async def wait_optimization(self, variable: str) -> str | None:
        return await self.portal.call(self.context.wait_optimization(variable))

    async def get_optimization_status(self, variable: str) -> dict[str, Any]:
        return await self.portal.call(self.context.get_optimization_status(variable))

    async def get_optimization_history(self, variable: str, limit: int = 100, since: Any = None,
                                       optimizer_id: str | None = None) -> list[dict[str, Any]]:
        return await self.portal.call(self.context.get_optimization_history(
            variable, limit, since, optimizer_id))

    async def next_trial(self, variable: str) -> Trial | None:
        return await self.portal.call(self.context.next_trial(variable))

    @overload
    async def report_trial(self, variable: str, trial_id: int, metrics: Any = None, *,
                           error: str = "", next: Literal[False] = False) -> dict[str, Any]: ...

    @overload
    async def report_trial(self, variable: str, trial_id: int, metrics: Any = None, *,
                           error: str = "", next: Literal[True]) -> Trial | None: ...

    async def report_trial(self, variable: str, trial_id: int, metrics: Any = None, *,
                           error: str = "", next: bool = False) -> dict[str, Any] | Trial | None:
        if next:
            return await self.portal.call(self.context.report_trial(
                variable, trial_id, metrics, error=error, next=True))
        return await self.portal.call(self.context.report_trial(variable, trial_id, metrics,
                                                                error=error))

    # -- watches: made on the IO loop, iterated from here ------------------------------------

    def watch_variable(self, name: str, include_initial: bool = True,
                       filter_fn: Callable[[Any, Any], bool] | None = None, throttle_ms: int = 0,
                       *, debounce_ms: int = 0, include_upstream: bool = False) -> NotebookWatch:
        return NotebookWatch(self.portal.run(_make(
            self.context.watch_variable, name, include_initial, filter_fn, throttle_ms,
            debounce_ms=debounce_ms, include_upstream=include_upstream)), self.portal)

    def watch_variables(self, names: Iterable[str], include_initial: bool = True,
                        filter_fn: Callable[[str, Any, Any], bool] | None = None,
                        throttle_ms: int = 0, debounce_ms: int = 0, *,
                        include_upstream: bool = False) -> NotebookWatch:
        return NotebookWatch(self.portal.run(_make(
            self.context.watch_variables, list(names), include_initial, filter_fn, throttle_ms,
            debounce_ms, include_upstream=include_upstream)), self.portal)

    def cancel_watch(self, watch_task: NotebookWatch | Watch | asyncio.Task[Any]) -> None:
        if isinstance(watch_task, NotebookWatch):
            watch_task.close()
        elif isinstance(watch_task, Watch):
            self.portal.loop.call_soon_threadsafe(watch_task.close)
        else:  # a task of the kernel loop: cancel it; its watches close as it unwinds
            watch_task.cancel()

    def __getattr__(self, name: str) -> Any:
        # spec methods not built yet: "not available yet" instead of AttributeError
        from .._planned import method

        return method(type(self).__name__, name)

    def __repr__(self) -> str:
        return f"<NotebookSession session_id={self.session_id!r} (IO thread {self.portal.name})>"


async def _make(factory: Callable[..., Watch], *args: Any, **kwargs: Any) -> Watch:
    """Create a watch on the IO loop (it subscribes to the hub there)."""
    return factory(*args, **kwargs)
