"""Optimization RPCs: start/stop (v0.4.x messages, extended), ask/tell, status, history.

Values, metrics, status and trials travel as JSON: optimizable variables are scalars (float,
integer, boolean, choice, module), and a status is a document, not a hot path.
"""

from __future__ import annotations

import json
from typing import Any

from ..._errors import InvalidArgument
from ..._proto import snakepit_bridge_pb2 as pb
from ..encode import variable_message
from .base import ServicerBase, rpc

MAX_JSON = 1 << 20  # config, proposals and metrics are small documents


def _loads(text: str, what: str, default: Any = None) -> Any:
    if not text:
        return default
    if len(text) > MAX_JSON:
        raise InvalidArgument(f"{what} is {len(text)} bytes (limit {MAX_JSON})")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidArgument(f"{what} is not valid JSON: {exc}") from None


def _dumps(value: Any) -> str:
    return json.dumps(value, allow_nan=False, default=str)


class OptimizationHandlers(ServicerBase):
    @rpc
    def StartOptimization(self, request, principal, raw):
        config: dict[str, Any] = dict(request.optimizer_config)  # v0.4.x: strings
        typed = _loads(request.optimizer_config_json, "optimizer_config_json", {})
        if not isinstance(typed, dict):
            raise InvalidArgument("optimizer_config_json must be a JSON object")
        config.update(typed)  # the typed config wins
        threshold = (request.convergence_threshold if request.HasField("convergence_threshold")
                     else None)
        run = self.store.optimizations.start(
            principal, request.session_id, request.variable_identifier,
            request.optimizer_id or "bayesian", config, request.max_iterations or None, threshold,
            request.client_side, request.lease_seconds or 30.0, request.driven)
        return pb.StartOptimizationResponse(success=True, optimization_id=run.id,
                                            revision=self.store.revision,
                                            status_json=_dumps(run.status()))

    @rpc
    def StopOptimization(self, request, principal, raw):
        run = self.store.optimizations.stop(principal, request.session_id,
                                            request.variable_identifier, request.optimization_id,
                                            "stopped")
        var = self.store.view.vars.get(run.row.var_id)
        reply = pb.StopOptimizationResponse(success=True, revision=self.store.revision,
                                            status_json=_dumps(run.status()))
        if var is not None:
            reply.final_value.CopyFrom(variable_message(var, raw).value)
        return reply

    @rpc
    async def NextTrial(self, request, principal, raw):
        has = bool(request.proposal_json)
        proposal = _loads(request.proposal_json, "proposal_json")
        trial, run = await self.store.optimizations.next_trial(
            principal, request.session_id, request.variable_identifier, request.optimization_id,
            proposal, has)
        return self._next_reply(trial, run)

    def _next_reply(self, trial: dict[str, Any] | None, run: Any) -> pb.NextTrialResponse:
        if trial is None:
            return pb.NextTrialResponse(done=True, stop_reason=run.doc.get("stop_reason") or "",
                                        revision=self.store.revision)
        return pb.NextTrialResponse(trial_id=trial["iteration"], value_json=_dumps(trial["value"]),
                                    revision=self.store.revision, optimization_id=run.id)

    @rpc
    async def ReportTrial(self, request, principal, raw):
        metrics = _loads(request.metrics_json, "metrics_json")
        has = bool(request.proposal_json)
        proposal = _loads(request.proposal_json, "proposal_json")
        run, trial = await self.store.optimizations.report_trial(
            principal, request.session_id, request.variable_identifier, request.optimization_id,
            request.trial_id, metrics, request.error[:2000], next=request.next,
            proposal=proposal, has_proposal=has)
        reply = pb.ReportTrialResponse(done=not run.running,
                                       stop_reason=run.doc.get("stop_reason") or "",
                                       revision=self.store.revision)
        if not request.omit_status:
            reply.status_json = _dumps(run.status())
        if request.next:
            reply.next.CopyFrom(self._next_reply(trial, run))
        return reply

    @rpc
    def GetOptimizationStatus(self, request, principal, raw):
        status = self.store.optimizations.status(principal, request.session_id,
                                                 request.variable_identifier,
                                                 request.optimization_id)
        return pb.OptimizationReply(json=_dumps(status))

    @rpc
    def GetOptimizationHistory(self, request, principal, raw):
        trials = self.store.optimizations.history(
            principal, request.session_id, request.variable_identifier, request.optimization_id,
            request.limit or 100, request.since)
        return pb.OptimizationReply(json=_dumps(trials))

    @rpc
    def KeepAliveOptimization(self, request, principal, raw):
        run = self.store.optimizations.keep_alive(principal, request.session_id,
                                                  request.variable_identifier,
                                                  request.optimization_id)
        return pb.OptimizationReply(json=_dumps({"lease_seconds": run.lease}))
