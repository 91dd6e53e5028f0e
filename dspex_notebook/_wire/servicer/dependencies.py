"""Dependency RPCs: ``AddDependency`` (v0.4.x message, extended), ``RemoveDependency``,
``GetDependencies``. The rules live in ``server/dependencies.py``; edge metadata travels as a
JSON object of scalars."""

from __future__ import annotations

import json

from ..._proto import snakepit_bridge_pb2 as pb
from ...server import dependencies
from .base import ServicerBase, rpc


class DependencyHandlers(ServicerBase):
    @rpc
    def AddDependency(self, request, principal, raw):
        where = f"dependency {request.from_variable} → {request.to_variable}"
        metadata = dependencies.parse_metadata_json(self.store.limits, request.metadata_json, where)
        rev = dependencies.add(self.store, principal, request.session_id, request.from_variable,
                               request.to_variable, request.dependency_type, metadata)
        return pb.AddDependencyResponse(success=True, revision=rev)

    @rpc
    def RemoveDependency(self, request, principal, raw):
        rev = dependencies.remove(self.store, principal, request.session_id,
                                  request.from_variable, request.to_variable)
        return pb.RemoveDependencyResponse(success=True, revision=rev)

    @rpc
    def GetDependencies(self, request, principal, raw):
        found = dependencies.lookup(self.store, principal, request.session_id,
                                    request.variable_identifier, request.dependents,
                                    request.include_transitive)
        reply = pb.GetDependenciesResponse(revision=self.store.revision)
        for entry in found:
            reply.dependencies.add(variable_id=entry["variable_id"], name=entry["name"],
                                   type=entry["type"], metadata_json=json.dumps(entry["metadata"]),
                                   depth=entry["depth"], via=entry["via"])
        return reply
