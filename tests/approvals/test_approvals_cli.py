"""`kernos approvals list|show|approve|reject`: the console script against a live server
(remote client) and against the store (local client, the installation itself)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from approvals_support import approval_server, pending_over_http, wait_run

from kernos.control import parse_api_key
from kernos.records import Role

SQLITE_ONLY = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


def kernos_script() -> str:
    return str(Path(sys.executable).parent / "kernos")


async def kernos(cwd: Path, *args: str, env: dict[str, str], code: int = 0) -> tuple[str, str]:
    """Run the console script without blocking the loop the server runs in."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KERNOS_")}
    process = await asyncio.create_subprocess_exec(
        kernos_script(),
        *args,
        cwd=cwd,
        env={**clean, "KERNOS_CONFIG": str(cwd / "no-config.toml"), "COLUMNS": "200", **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    stdout, stderr = out.decode(), err.decode()
    assert process.returncode == code, (args, process.returncode, stdout, stderr)
    assert "Traceback" not in stderr, stderr
    return stdout, stderr


@pytest.mark.parametrize("command", ["list", "show", "approve", "reject"])
def test_help_has_an_example(command: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [kernos_script(), "approvals", command, "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stderr
    assert "Example: kernos approvals " + command in done.stdout
    assert not list(tmp_path.iterdir()), "--help must not create a store"


@SQLITE_ONLY
async def test_remote_list_show_approve_with_edits_and_a_conflict(
    store_url: str, tmp_path: Path
) -> None:
    async with approval_server(store_url) as server:
        operator = await server.key(Role.OPERATOR, name="cli operator")
        env = {"KERNOS_URL": server.url, "KERNOS_API_KEY": operator}
        async with server.client(server.admin_key) as admin:
            response = await admin.post(
                "/runs", json={"workflow": "approvals_simple", "input": {"title": "cli?"}}
            )
            run_id = response.json()["run_id"]
            request = await pending_over_http(admin, run_id)
        approval_id = request["approval_id"]

        out, _ = await kernos(tmp_path, "approvals", "list", "--mine", "--json", env=env)
        listed: dict[str, Any] = json.loads(out)
        assert [a["approval_id"] for a in listed["approvals"]] == [approval_id]
        out, _ = await kernos(tmp_path, "approvals", "list", env=env)
        assert approval_id in out and "cli?" in out
        out, _ = await kernos(tmp_path, "approvals", "show", approval_id, env=env)
        assert '"plan": "v2"' in out and "operator" in out

        out, _ = await kernos(
            tmp_path,
            "approvals",
            "approve",
            approval_id,
            "--edits",
            '{"plan": "v9"}',
            "--comment",
            "from the shell",
            "--json",
            env=env,
        )
        decided = json.loads(out)
        assert decided["status"] == "approved"
        assert decided["decision"]["by"] == f"key:{parse_api_key(operator)[0]}"
        _, err = await kernos(tmp_path, "approvals", "reject", approval_id, env=env, code=1)
        assert "approved" in err and approval_id in err
        _, err = await kernos(
            tmp_path, "approvals", "approve", approval_id, "--edits", "{nope", env=env, code=2
        )
        assert "--edits is not JSON" in err
        async with server.client(server.admin_key) as admin:
            run = await wait_run(admin, run_id, "succeeded")
        assert run["output"]["value"] == {"plan": "v9"}
        assert run["output"]["comment"] == "from the shell"


@SQLITE_ONLY
async def test_local_store_reject(store_url: str, tmp_path: Path) -> None:
    async with approval_server(store_url) as server:
        async with server.client(server.admin_key) as admin:
            response = await admin.post("/runs", json={"workflow": "approvals_simple"})
            run_id = response.json()["run_id"]
            request = await pending_over_http(admin, run_id)
        env = {"KERNOS_STORE": store_url}
        out, _ = await kernos(tmp_path, "approvals", "list", "--status", "pending", env=env)
        assert request["approval_id"] in out
        out, _ = await kernos(
            tmp_path, "approvals", "reject", request["approval_id"], "-m", "no", env=env
        )
        assert out.startswith("rejected")
        server.app.engine.poke()
        async with server.client(server.admin_key) as admin:
            run = await wait_run(admin, run_id, "succeeded")
        assert run["output"]["decision"] == "rejected" and run["output"]["by"] == "system"
