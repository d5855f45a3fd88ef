"""The `kernos` command line: the server and workers, runs, events, keys, users, tenants.

Every command is written once against one client (``_client.Client``) with two
implementations: the REST API of a server (``--url``), or the control-plane
Service over a store in this process (``--store``), so the CLI does what the
API serves either way. ``_settings`` decides which, and reads the config file.
"""

from kernos.cli._app import app, main

__all__ = ["app", "main"]
