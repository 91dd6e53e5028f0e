"""The grpc.aio servicer of ``snakepit.bridge.BridgeService``, in handler groups:

* ``base.py``: authentication, codec flag, error → status (every handler goes through it);
* ``variables.py``: sessions and variables (unary RPCs);
* ``watch.py``: ``Watch``, ``WatchVariables`` (v0.4.x) and ``GetVariableStats``;
* ``optimization.py``: server-held optimization runs (start/stop, ask/tell, status, trials);
* ``io.py``: export/import documents and revisions (read at a revision, restore);
* ``dependencies.py``: dependencies between variables (add, remove, list);
* ``access.py``: access rules of variables (set, get, check).
"""

from __future__ import annotations

from ..._proto import snakepit_bridge_pb2_grpc as pb_grpc
from .access import AccessHandlers
from .base import MalformedRequest, lenient_deserializer, unsupported
from .dependencies import DependencyHandlers
from .io import IOHandlers
from .optimization import OptimizationHandlers
from .variables import VariableHandlers
from .watch import WatchHandlers

__all__ = ["BridgeServicer", "MalformedRequest", "lenient_deserializer"]


class BridgeServicer(VariableHandlers, WatchHandlers, OptimizationHandlers, AccessHandlers,
                     IOHandlers,
                     DependencyHandlers,
                     pb_grpc.BridgeServiceServicer):
    """``snakepit.bridge.BridgeService`` backed by a :class:`~...server.store.Store`."""

    # not served (yet): a clear UNIMPLEMENTED instead of the generated base class' exception
    ExecuteTool = unsupported("ExecuteTool (tool bridge)")
    RegisterTools = unsupported("RegisterTools (tool bridge)")
    GetExposedElixirTools = unsupported("GetExposedElixirTools (tool bridge)")
    ExecuteElixirTool = unsupported("ExecuteElixirTool (tool bridge)")
    ExecuteStreamingTool = unsupported("ExecuteStreamingTool (tool bridge)")
