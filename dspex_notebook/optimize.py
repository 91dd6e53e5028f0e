"""Public home of the optimizers: search spaces, ``BaseOptimizer`` and the built-ins.

    from dspex_notebook.optimize import BaseOptimizer, space_for, make_optimizer

The implementation lives in ``dspex_notebook._optimize`` (pure numpy); see docs/optimizers.md.
"""

from ._optimize import *  # noqa: F403 - re-export exactly its __all__
from ._optimize import __all__  # noqa: F401
