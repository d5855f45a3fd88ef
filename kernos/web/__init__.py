"""The web dashboard: server-rendered pages over the same Service the API uses.

Import costs FastAPI and Jinja2; ``import kernos`` never imports this package.
``kernos up`` serves it beside the API::

    api = create_app(Service(app), dashboard=kernos.web.mount)
"""

from kernos.web._mount import mount

__all__ = ["mount"]
