"""The Kernos REST API (FastAPI) and its live event streams.

Import costs FastAPI and pydantic; ``import kernos`` never imports this package.
Run it with ``kernos up``, or build the application yourself::

    app = kernos.Kernos("sqlite:///kernos.db")
    await app.open()
    api = create_app(Service(app))
"""

from kernos.api._app import API_PREFIX, create_app
from kernos.api._settings import ServerSettings

__all__ = ["API_PREFIX", "ServerSettings", "create_app"]
