"""Queue throughput and latency of Kernos: see ``_kernos_queue.py``.

    python benchmarks/queue.py --store postgres --mode burst --workers 4

This file is only a shim, because its name is also the standard library's ``queue``:
every script in ``benchmarks/`` has this directory first on ``sys.path``, so an
``import queue`` anywhere (``concurrent.futures``, psycopg) finds this file. Imported
as a module, it puts the standard library's ``queue`` in its place.
"""

import sys

if __name__ == "__main__":
    from _kernos_queue import main

    main()
else:
    import importlib.machinery
    import importlib.util
    import os

    _here = os.path.dirname(os.path.abspath(__file__))
    _path = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
    _spec = importlib.machinery.PathFinder.find_spec("queue", _path)
    assert _spec is not None and _spec.loader is not None, "no standard library queue module"
    _module = importlib.util.module_from_spec(_spec)
    sys.modules[__name__] = _module
    _spec.loader.exec_module(_module)
