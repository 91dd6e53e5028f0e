"""The bridge server: store, backends, and runners (embedded thread or foreground process)."""

from .limits import Limits
from .runner import EmbeddedServer, ServerConfig, embedded_server, serve_forever
from .store import Store

__all__ = ["EmbeddedServer", "Limits", "ServerConfig", "Store", "embedded_server", "serve_forever"]
