"""dspex_notebook: live, typed, versioned session variables for Jupyter.

The async :class:`SessionContext` implements the variables API of the DSPex/snakepit gRPC bridge
against this package's own ``grpc.aio`` server (embedded by default, or ``dspex-notebook serve``).
"""

__version__ = "0.1.0"

from ._cache import VariableCache
from ._connect import channel
from ._errors import (
    AccessDenied,
    AuthenticationError,
    Compacted,
    ConstraintViolation,
    DspexError,
    InvalidArgument,
    OptimizationConflict,
    ResourceLimitExceeded,
    SessionNotFoundError,
    Unsupported,
    VariableExistsError,
    VariableNotFoundError,
    VariableTypeError,
    VersionConflict,
)
from ._session import SessionContext
from ._types import Variable, VariableType, VariableUpdate
from ._values import VariableSpec, infer_type
from ._watch import Watch
from ._wire.status import BridgeUnavailable

__all__ = [
    "AccessDenied",
    "AuthenticationError",
    "BridgeUnavailable",
    "Compacted",
    "ConstraintViolation",
    "DspexError",
    "InvalidArgument",
    "OptimizationConflict",
    "ResourceLimitExceeded",
    "SessionContext",
    "SessionNotFoundError",
    "Unsupported",
    "Variable",
    "VariableCache",
    "VariableExistsError",
    "VariableNotFoundError",
    "VariableSpec",
    "VariableType",
    "VariableTypeError",
    "VariableUpdate",
    "VersionConflict",
    "Watch",
    "__version__",
    "channel",
    "infer_type",
]


def load_ipython_extension(ip):  # noqa: ANN001 - IPython's hook; imports IPython lazily
    """``%load_ext dspex_notebook`` (see :mod:`dspex_notebook.notebook`)."""
    from .notebook.extension import load_ipython_extension as load

    load(ip)


def unload_ipython_extension(ip):  # noqa: ANN001
    """``%unload_ext dspex_notebook``."""
    from .notebook.extension import unload_ipython_extension as unload

    unload(ip)
