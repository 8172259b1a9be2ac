"""One run as a whole: exit codes, the summary line, the Lease, two runs at once."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from kubernetes import client

from poller.__main__ import main, run_once
from poller.lease import LEASE_NAME, Lease
from tests.integration.poller_helpers import (
    create, create_deferred, events, make_poller, poller_env, read, submissions_for,
    wait_for_first_status)

SUMMARY = re.compile(r"^poller run: seen=\d+ skipped=\d+ changed=\d+ submitted=\d+ "
                     r"delivered=\d+ orphans_cancelled=\d+ errors=\d+ seconds=\d+\.\d\d$")
LEASE_NAMESPACE = "fntc-system"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(("setting", "value", "said"), [
    ("FNTC_STUCK_AFTER", "soon", "FNTC_STUCK_AFTER must be a number"),
    ("FNTC_CONCURRENCY", "-2", "FNTC_CONCURRENCY must not be negative"),
    ("FNTC_LOG_FORMAT", "xml", "FNTC_LOG_FORMAT must be text or json"),
    ("FNTC_KEYCLOAK_CLIENT_SECRET", "", "FNTC_KEYCLOAK_CLIENT_SECRET"),
    ("FNTC_GITHUB_APP_KEY_FILE", "/nonexistent/key.pem", "FNTC_GITHUB_APP_KEY_FILE"),
    ("KUBECONFIG", "/nonexistent/kubeconfig", "cannot configure the Kubernetes client"),
], ids=lambda value: value if isinstance(value, str) and value.startswith(("FNTC", "KUBE"))
    else "")
def test_bad_configuration_exits_2(stack, namespace, capsys, setting, value, said):
    env = {**poller_env(stack, namespace), setting: value}
    assert run_once(env) == (2, None)
    assert said in capsys.readouterr().err


def test_help_says_what_a_run_does_without_touching_kubernetes(tmp_path, capsys):
    # No settings, and a kubeconfig that does not exist: --help needs neither.
    env = {"PATH": os.environ["PATH"], "KUBECONFIG": str(tmp_path / "absent")}
    result = subprocess.run([sys.executable, "-m", "poller", "--help"], env=env,
                            capture_output=True, text=True, timeout=30)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith("usage: python -m poller\n")
    for said in ("Exit codes: 0", "FNTC_NAMESPACES", "FNTC_ORPHAN_LOOKBACK", "KUBECONFIG"):
        assert said in result.stdout
    assert main(["--verbose"]) == 2
    assert capsys.readouterr().err.startswith("usage: python -m poller")


def test_an_unreachable_api_server_exits_1(stack, namespace, tmp_path, capsys):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: nowhere\n"
        f"clusters: [{{name: nowhere, cluster: {{server: 'https://127.0.0.1:{closed_port()}',"
        " insecure-skip-tls-verify: true}}]\n"
        "users: [{name: nobody, user: {token: not-a-secret}}]\n"
        "contexts: [{name: nowhere, context: {cluster: nowhere, user: nobody}}]\n")
    started = time.monotonic()
    code, summary = run_once({**poller_env(stack, namespace), "KUBECONFIG": str(kubeconfig)})
    assert (code, summary) == (1, None)
    assert "the run could not work" in capsys.readouterr().err
    assert time.monotonic() - started < 10


def test_the_cronjob_command_exits_0_with_failed_tasks_and_one_summary_line(stack, sandbox,
                                                                          kube_api,
                                                                          namespace):
    create(kube_api, namespace, "crash", image="ghcr.io/fntc-sandbox/analytics:crash")
    create(kube_api, namespace, "broken")
    wait_for_first_status(kube_api, namespace, ["crash", "broken"])
    sandbox.clock.advance(10)
    broken_id = read(kube_api, namespace, "broken")["status"]["taskId"]
    sandbox.fn_faults.add("GET", f"/tasks/{broken_id}", 500, body={"error": "Internal Error"})

    result = stack.poller({"FNTC_NAMESPACES": namespace}, timeout=60)
    assert result.returncode == 0, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert SUMMARY.match(last), last
    # Both changed: one Failed, the other says in its Synced condition why it did not move.
    assert "seen=2 " in last and "changed=2 " in last and "errors=1 " in last
    assert read(kube_api, namespace, "crash")["status"]["phase"] == "Failed"


def put_lease(kube_api, holder: str, renewed: datetime) -> None:
    api = client.CoordinationV1Api(kube_api)
    body = client.V1Lease(metadata=client.V1ObjectMeta(name=LEASE_NAME),
                          spec=client.V1LeaseSpec(holder_identity=holder,
                                                  lease_duration_seconds=600,
                                                  acquire_time=renewed, renew_time=renewed))
    try:
        api.delete_namespaced_lease(LEASE_NAME, LEASE_NAMESPACE)
    except client.exceptions.ApiException as error:
        assert error.status == 404
    api.create_namespaced_lease(LEASE_NAMESPACE, body)


@pytest.fixture
def lease_restored(kube_api):
    """Leave the Lease free for the next test, whatever this one did to it."""
    yield
    try:
        client.CoordinationV1Api(kube_api).delete_namespaced_lease(LEASE_NAME, LEASE_NAMESPACE)
    except client.exceptions.ApiException as error:
        assert error.status == 404


def test_a_run_while_another_holds_the_lease_skips(stack, sandbox, kube_api, namespace,
                                                   capsys, lease_restored):
    create(kube_api, namespace, "waiting-turn")
    wait_for_first_status(kube_api, namespace, ["waiting-turn"])
    before = read(kube_api, namespace, "waiting-turn")

    put_lease(kube_api, "the-cronjob-run", datetime.now(timezone.utc))
    assert run_once(poller_env(stack, namespace)) == (0, None)
    assert "another run holds the lease" in capsys.readouterr().err
    assert read(kube_api, namespace, "waiting-turn") == before

    # A Lease its holder stopped renewing long ago is taken over, then given back.
    put_lease(kube_api, "a-dead-run", datetime.now(timezone.utc) - timedelta(hours=1))
    code, summary = run_once(poller_env(stack, namespace))
    assert code == 0 and summary.changed == 1
    lease = client.CoordinationV1Api(kube_api).read_namespaced_lease(LEASE_NAME,
                                                                     LEASE_NAMESPACE)
    assert lease.spec.holder_identity is None


def test_a_lease_is_renewed_only_by_its_holder(kube_api, lease_restored):
    mine = Lease(kube_api, LEASE_NAMESPACE, duration=30)
    theirs = Lease(kube_api, LEASE_NAMESPACE, duration=30)
    assert mine.identity != theirs.identity
    assert mine.acquire() and not theirs.acquire()
    api = client.CoordinationV1Api(kube_api)
    first = api.read_namespaced_lease(LEASE_NAME, LEASE_NAMESPACE).spec.renew_time
    assert mine.renew()
    assert api.read_namespaced_lease(LEASE_NAME, LEASE_NAMESPACE).spec.renew_time > first
    assert not theirs.renew()
    mine.release()
    assert theirs.acquire()
    assert not mine.renew()
    theirs.release()


def test_two_runs_at_once_submit_each_task_once(stack, sandbox, kube_api, namespace):
    names = ["first", "second", "third"]
    for name in names:
        create_deferred(sandbox, kube_api, namespace, name)
    runs = [make_poller(stack, kube_api, namespace) for _ in range(2)]
    # Both runs read the same Tasks, at the same resourceVersions, before either
    # claims one: the worst case a Lease would normally rule out.
    both_listed = threading.Barrier(2, timeout=20)
    for run in runs:
        listed = run.tasks.iterate

        def iterate(*args: Any, listed=listed, **kwargs: Any) -> list[dict[str, Any]]:
            tasks = list(listed(*args, **kwargs))
            both_listed.wait()
            return tasks
        run.tasks.iterate = iterate
    summaries: list = [None, None]

    def work(index: int) -> None:
        summaries[index] = runs[index].run()
    threads = [threading.Thread(target=work, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert all(summary is not None and summary.errors == 0 for summary in summaries)
    assert sum(summary.submitted for summary in summaries) == len(names)
    for name in names:
        made = submissions_for(sandbox, namespace, name)
        assert len(made) == 1, name
        status = read(kube_api, namespace, name)["status"]
        assert (status["phase"], status["taskId"]) == ("Submitted", made[0].id)
        assert "submissionClaim" not in status
        assert [reason for reason, _ in events(kube_api, namespace, name)].count("Submitted") \
            == 1
