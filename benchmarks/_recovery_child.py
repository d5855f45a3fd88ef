"""The worker process of ``recovery.py``: starts or resumes the run, reports on stdout.

Kept lean on purpose: it imports nothing that ``kernos`` would import anyway before
timing ``import kernos``, so that figure is what a fresh application process pays.

    python benchmarks/_recovery_child.py start|resume URL LEDGER STEPS RUN_ID
"""

from __future__ import annotations

import time

PROCESS_STARTED = time.time()  # first thing: interpreter start-up is measured from here

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

HANG_ENV = "KERNOS_BENCH_HANG_AT"  # set for the first process only: its step blocks there
CLOSE_TIMEOUT = 10.0


def main(argv: list[str]) -> None:
    mode, url, ledger, steps, run_id = argv[1], argv[2], argv[3], int(argv[4]), argv[5]
    entered = time.time()
    started = time.perf_counter()
    import kernos

    import_s = time.perf_counter() - started
    import asyncio

    hang_at = int(os.environ.get(HANG_ENV, "-1"))

    @kernos.step(name="recovery_bench.mark")
    async def mark(index: int) -> int:
        with open(ledger, "a") as handle:  # noqa: ASYNC230 (a tiny append, inline on purpose)
            handle.write(f"{index} {os.getpid()} {time.time():.6f}\n")
        if index == hang_at:
            await asyncio.sleep(3600)  # the parent SIGKILLs this process here
        return index

    @kernos.workflow(name="recovery_bench")
    async def count(n: int) -> int:
        total = 0
        for i in range(n):
            total += await mark(i)
        return total

    async def go() -> dict[str, float]:
        opening = time.time()
        app = await kernos.Kernos(url).open()
        opened = time.time()
        try:
            if mode == "start":
                handle = await app.start(count, steps, run_id=run_id)
            else:
                handle = app.handle(run_id)  # taken over from the dead worker on open
            result = await handle.result(timeout=120)
            done = time.time()
        finally:
            try:
                await asyncio.wait_for(app.close(), CLOSE_TIMEOUT)
            except TimeoutError:  # see close_bounded in steps.py
                print("child: Kernos.close() hung; abandoned", file=sys.stderr)
        if result != steps * (steps - 1) // 2:
            raise RuntimeError(f"wrong result {result}")
        return {
            "pid": os.getpid(),
            "process_started_at": PROCESS_STARTED,
            "child_entered_at": entered,
            "import_kernos_s": import_s,
            "open_started_at": opening,
            "opened_at": opened,
            "done_at": done,
        }

    print(json.dumps(asyncio.run(go())), flush=True)


if __name__ == "__main__":
    main(sys.argv)
