"""`make demo`, scripted part end to end: the demo as users run it (examples/demo.py,
its worker crash, the agent on the fake OpenAI server, `kernos up` driven over
HTTP with approvals, a policy-gated tool call and a signed webhook), in a
temporary directory, with the server stopped at the end (KERNOS_DEMO_SCRIPTED_ONLY).

The output is what a first-time user reads, so the test checks what it says;
rich wraps long lines, so lines are compared with their whitespace collapsed."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo.py"
BOUND_S = 240  # a hung demo fails the test instead of hanging CI
# The demo must not reach a real provider whatever the developer's environment says.
UNSET = ("KERNOS_DEMO_MODEL", "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "KERNOS_API_KEY")


def run_demo(tmp_path: Path) -> str:
    """Run the demo in its own process group; kill the group if it outlives the bound."""
    env = {key: value for key, value in os.environ.items() if key not in UNSET}
    env.update(
        KERNOS_DEMO_DIR=str(tmp_path / "demo-data"),
        KERNOS_DEMO_PORT="0",
        KERNOS_DEMO_SCRIPTED_ONLY="1",
        PYTHONUNBUFFERED="1",
    )
    process = subprocess.Popen(
        [sys.executable, str(DEMO)],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # the demo, its crashing worker and `kernos up`: one group
    )
    try:
        output, _ = process.communicate(timeout=BOUND_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"the demo did not finish within {BOUND_S} s:\n{output}")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 0, output
    return output


def flat(text: str) -> str:
    return " ".join(text.split())


def test_the_demo_shows_people_in_the_loop_and_stops_its_server(tmp_path: Path) -> None:
    output = run_demo(tmp_path)
    said = flat(output)

    # Parts 1 to 6 still run: the crash and recovery, the agent, the server over HTTP.
    assert "killed by signal 9" in said
    assert "replay: identical (7 entries checked) provider requests during replay: 0" in said
    assert "same Idempotency-Key again -> 200, same run: True" in said

    # An approval gate: refused to the key that started the run, approved by the
    # operator with a comment (journaled), a second request rejected.
    assert "now 'waiting' (suspended" in said
    assert "who decides: operator for 1 h, then admin for 1 day(s), then reject" in said
    refused = re.search(r"with the key that started the run -> (\d+): key:\S+ started", said)
    assert refused and refused.group(1) == "403", said
    assert "another person must" in said
    assert "approve as olivia -> 200, decided by user:olivia: 'within the travel budget'" in said
    assert "run succeeded: {'paid': True, 'receipt': 'transfer of 420 EUR to sam'" in said
    assert "(approval): approved by user:olivia, comment 'within the travel budget'" in said
    assert "rejected by olivia run succeeded: {'paid': False, 'by': 'user:olivia'" in said

    # A tool call the applied policy holds; what ran is the edited call, not the draft.
    assert re.search(r"PUT /policy -> version 1 \(sha256 [0-9a-f]{12}\.\.\.\)", said), said
    assert "pending tool_call: publish(" in said and "The best agent OS ever" in said
    assert "needs_approval (tenant default policy v1 rule 'publishing-needs-a-person'" in said
    assert "approval approved with edits by user:olivia: 'toned down'" in said
    assert (
        "publish: approved, ran -> posted to #blog: "
        "Kernos 0.1 is out: durable agents, approvals, policies and a dashboard." in said
    )
    assert "ran -> posted to #blog: Kernos 0.1 is out!!!" not in said

    # The webhook: every request and decision reached the receiver, signed.
    assert said.count("signature verified") == 7
    assert said.count("approval.requested") == 4 and said.count("approval.decided") == 3
    assert "7 deliveries, ['delivered']; refused by the receiver: 0" in said

    # Where to go next, then the server is stopped (scripted only).
    sign_in = re.search(
        r"Dashboard: (http://127\.0\.0\.1:\d+)/ sign in as admin, password (\S+)", said
    )
    assert sign_in, said
    assert f"API docs: {sign_in.group(1)}/api/v1/docs" in said
    with pytest.raises(httpx.ConnectError):
        httpx.get(sign_in.group(1) + "/healthz", timeout=5)
