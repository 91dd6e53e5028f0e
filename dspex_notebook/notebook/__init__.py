"""The Jupyter layer: ``%load_ext dspex_notebook``, ``%var`` magics, the notebook session."""

from .extension import current_session, load_ipython_extension, unload_ipython_extension
from .proxy import NotebookSession

__all__ = ["NotebookSession", "current_session", "load_ipython_extension", "unload_ipython_extension"]
