"""Access-rule RPCs: ``SetVariablePermissions``, ``GetVariablePermissions``,
``CheckVariableAccess`` (``server/access.py`` holds the rules and their checks)."""

from __future__ import annotations

import json

from ..._errors import InvalidArgument
from ..._proto import snakepit_bridge_pb2 as pb
from ...server import access
from .base import ServicerBase, rpc


class AccessHandlers(ServicerBase):
    @rpc
    def SetVariablePermissions(self, request, principal, raw):
        try:
            rules = json.loads(request.rules_json or "[]")
        except (ValueError, RecursionError) as exc:
            raise InvalidArgument(f"rules_json is not valid JSON: {exc}") from None
        var, stored, revision = access.set_permissions(self.store, principal, request.session_id,
                                                       request.variable_identifier, rules)
        return pb.VariablePermissionsResponse(variable_id=var.id, rules_json=json.dumps(stored),
                                              revision=revision)

    @rpc
    def GetVariablePermissions(self, request, principal, raw):
        var, rules = access.get_permissions(self.store, principal, request.session_id,
                                            request.variable_identifier)
        return pb.VariablePermissionsResponse(variable_id=var.id, rules_json=json.dumps(rules),
                                              revision=self.store.revision)

    @rpc
    def CheckVariableAccess(self, request, principal, raw):
        allowed, reason = access.check_access(self.store, principal, request.session_id,
                                              request.variable_identifier, request.permission,
                                              request.as_session)
        return pb.CheckVariableAccessResponse(allowed=allowed, reason=reason,
                                              revision=self.store.revision)
