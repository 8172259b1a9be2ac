"""What admission does around a Task's life: dry runs, name clashes, FN outages,
updates, deletes, the first status, who may create Tasks, time budgets and logs.

Most tests go through the real API server and FNTC's webhook process; the ones
that need settings the shared webhook does not have (an allow-list of requesters,
a short time budget) review in process against the same stand-ins.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any, Callable

import pytest

from devenv.stack import LocalStack
from poller.__main__ import run_once
from poller.run import Summary
from standins.sandbox import Sandbox
from taskcore import logs
from taskcore.fn import FNClient, task_body
from taskcore.keycloak import Keycloak, UnknownUser
from taskcore.settings import Settings
from taskcore.submission import Submitter
from taskcore.task import Marker, review_spec
from tests.conftest import task_manifest
from webhook.admission import Admission
from webhook.review import API_VERSION, AdmissionRequest, AdmissionResponse

TASK_ID = "tasks.federatednode.com/task-id"
ADMISSION_UID = "tasks.federatednode.com/admission-uid"
SUBMISSION = "tasks.federatednode.com/submission"
GUARD_DENIED = 'admission webhook "guard.tasks.federatednode.com" denied the request: '
SUBMIT_DENIED = 'admission webhook "submit.tasks.federatednode.com" denied the request: '
JWT = re.compile(r"eyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]{8,}")


# -- helpers -----------------------------------------------------------------------------


def get_task(stack: LocalStack, namespace: str, name: str) -> dict[str, Any]:
    return json.loads(stack.plane.kubectl("get", "task", name, "-n", namespace,
                                          "-o", "json").stdout)


def fn_tasks_for(sandbox: Sandbox, namespace: str, name: str) -> list[Any]:
    needle = f" namespace={namespace} task={name} "
    return [task for task in sandbox.fn_state.tasks.values()
            if needle in f"{task.description or ''} "]


def eventually(check: Callable[[], Any], *, timeout: float = 5.0) -> Any:
    """Poll ``check`` until it returns something true: for work another process or a
    background thread does (a status write, a cancel), never to let time pass."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def poll(stack: LocalStack, sandbox: Sandbox, namespace: str) -> Summary:
    """One poller run over ``namespace``, on the sandbox's clock (the FN's clock)."""
    code, summary = run_once({**stack.env(), "FNTC_NAMESPACES": namespace},
                             now=sandbox.clock.now)
    assert code == 0 and summary is not None, f"poller run failed with exit code {code}"
    return summary


def create_fn_task_directly(sandbox: Sandbox, marker: Marker) -> int:
    """An FN task for ``marker`` made behind FNTC's back, as alice, through the FN's API."""
    settings = Settings.from_env(sandbox.env())
    keycloak = Keycloak.from_settings(settings)
    fn = FNClient(settings.fn_url)
    try:
        spec = review_spec(marker.name, task_manifest(marker.name, marker.namespace)["spec"]).spec
        assert spec is not None
        token = keycloak.fn_token_for(keycloak.find_user(email="alice@example.org"))
        return fn.create(token, "project1", task_body(spec, name=marker.name, marker=marker))
    finally:
        keycloak.close()
        fn.close()


def fn_requests_since(sandbox: Sandbox, start: int) -> list[tuple[str, str, int]]:
    with sandbox.fn_state.lock:
        return [(request.method, request.path, request.status)
                for request in sandbox.fn_state.requests[start:]]


# -- dry runs ----------------------------------------------------------------------------


def test_dry_run_validates_with_the_fn_and_creates_nothing(stack, sandbox, namespace) -> None:
    start = len(sandbox.fn_state.requests)
    manifest = task_manifest("dry", namespace)
    manifest["metadata"]["annotations"] = {TASK_ID: "4242"}
    result = stack.apply(manifest, args=("--dry-run=server", "-o", "json"))
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert TASK_ID not in (shown["metadata"].get("annotations") or {})

    calls = fn_requests_since(sandbox, start)
    assert ("POST", "/tasks/validate", 200) in calls
    assert not any(method == "POST" and path == "/tasks" for method, path, _ in calls)
    assert fn_tasks_for(sandbox, namespace, "dry") == []
    missing = stack.plane.kubectl("get", "task", "dry", "-n", namespace, check=False)
    assert missing.returncode != 0 and "NotFound" in missing.stderr


def test_dry_run_passes_the_fns_refusal_through(stack, sandbox, namespace) -> None:
    start = len(sandbox.fn_state.requests)
    result = stack.apply(task_manifest("dry-refused", namespace, project="project9"),
                         args=("--dry-run=server",))
    assert result.returncode != 0
    assert SUBMIT_DENIED + "Task refused: the Federated Node refused the task: it has no " \
        "project 'project9'; check spec.project" in result.stderr
    assert ("POST", "/tasks/validate", 400) in fn_requests_since(sandbox, start)


# -- names already taken -----------------------------------------------------------------


def test_a_taken_name_is_refused_before_anything_is_submitted(stack, sandbox,
                                                              namespace) -> None:
    assert stack.apply(task_manifest("clash", namespace)).returncode == 0
    [original] = fn_tasks_for(sandbox, namespace, "clash")

    again = stack.plane.kubectl("create", "-f", "-", check=False, input=json.dumps(
        task_manifest("clash", namespace, dataset="cancer-registry")))
    assert again.returncode != 0
    assert again.stderr.strip().endswith(
        SUBMIT_DENIED + f"a Task named clash already exists in {namespace}; "
        "choose another name")
    assert fn_tasks_for(sandbox, namespace, "clash") == [original]

    summary = poll(stack, sandbox, namespace)
    assert summary.orphans_cancelled == 0
    assert original.cancelled_at is None
    assert get_task(stack, namespace, "clash")["status"]["taskId"] == original.id


def test_an_fn_task_whose_task_was_never_stored_is_cancelled(stack, sandbox,
                                                             namespace) -> None:
    ghost = Marker("local", namespace, "ghost", str(uuid.uuid4()))
    task_id = create_fn_task_directly(sandbox, ghost)
    assert sandbox.fn_state.tasks[task_id].cancelled_at is None

    summary = poll(stack, sandbox, namespace)
    assert summary.orphans_cancelled == 1
    assert sandbox.fn_state.tasks[task_id].cancelled_at is not None
    assert (task_id, 201) in sandbox.fn_state.cancels
    assert poll(stack, sandbox, namespace).orphans_cancelled == 0


# -- FN or Keycloak down at admission ----------------------------------------------------


def _assert_pending(stack: LocalStack, namespace: str, name: str) -> dict[str, Any]:
    def with_status() -> dict[str, Any] | None:
        task = get_task(stack, namespace, name)
        return task if (task.get("status") or {}).get("phase") else None

    task = eventually(with_status)
    assert task, "the first status was not written"
    status = task["status"]
    assert status["phase"] == "Pending" and "taskId" not in status
    [condition] = [item for item in status["conditions"] if item["type"] == "Submitted"]
    assert condition["status"] == "False" and condition["reason"] == "FNUnavailable"
    assert "Not submitted yet" in condition["message"]
    row = stack.plane.kubectl("get", "tasks", name, "-n", namespace,
                              "--no-headers").stdout.split()
    assert row[:2] == [name, "Pending"]
    return task


def test_fn_outage_admits_pending_then_the_poller_submits_once(stack, sandbox,
                                                               namespace) -> None:
    sandbox.fn_faults.add("*", "/tasks", 503, {"error": "Service Unavailable"}, times=50)
    manifest = task_manifest("outage", namespace)
    manifest["metadata"]["annotations"] = {TASK_ID: "4242", SUBMISSION: "submitted"}
    result = stack.apply(manifest)
    assert result.returncode == 0, result.stderr
    assert "is admitted as Pending and will be submitted later" in result.stderr
    assert "(503)" in result.stderr

    task = _assert_pending(stack, namespace, "outage")
    annotations = task["metadata"]["annotations"]
    assert annotations[SUBMISSION] == "deferred" and TASK_ID not in annotations
    assert "503" in task["status"]["conditions"][0]["message"]
    assert fn_tasks_for(sandbox, namespace, "outage") == []

    poll(stack, sandbox, namespace)            # still down: stays Pending, nothing made
    assert fn_tasks_for(sandbox, namespace, "outage") == []
    assert get_task(stack, namespace, "outage")["status"]["phase"] == "Pending"

    sandbox.fn_faults.clear()
    summaries = [poll(stack, sandbox, namespace) for _ in range(3)]
    assert [summary.submitted for summary in summaries] == [1, 0, 0]
    [fn_task] = fn_tasks_for(sandbox, namespace, "outage")
    assert fn_task.description.endswith(f"uid={annotations[ADMISSION_UID]}")
    status = get_task(stack, namespace, "outage")["status"]
    assert (status["phase"], status["taskId"]) == ("Submitted", fn_task.id)


def test_keycloak_outage_admits_pending(stack, sandbox, namespace) -> None:
    sandbox.keycloak_faults.add("*", "/", 502, {"error": "bad gateway"}, times=50)
    result = stack.apply(task_manifest("kc-outage", namespace))
    assert result.returncode == 0, result.stderr
    assert "Keycloak failed while" in result.stderr
    _assert_pending(stack, namespace, "kc-outage")
    sandbox.keycloak_faults.clear()
    assert poll(stack, sandbox, namespace).submitted == 1
    assert len(fn_tasks_for(sandbox, namespace, "kc-outage")) == 1


def test_a_task_the_fn_made_despite_a_5xx_is_adopted_not_made_again(stack, sandbox,
                                                                    namespace) -> None:
    # Validation and the marker lookup work; the create answers 503, as when the FN
    # made the task and failed afterwards. (The first matching fault wins, and
    # status 0 lets the request through.)
    sandbox.fn_faults.add("POST", "/tasks/validate", 0, times=1)
    sandbox.fn_faults.add("POST", "/tasks", 503, {"error": "Service Unavailable"}, times=1)
    result = stack.apply(task_manifest("half-made", namespace))
    assert result.returncode == 0, result.stderr
    uid = _assert_pending(stack, namespace, "half-made")["metadata"]["annotations"][
        ADMISSION_UID]
    made = create_fn_task_directly(sandbox, Marker("local", namespace, "half-made", uid))

    assert poll(stack, sandbox, namespace).submitted == 0
    status = get_task(stack, namespace, "half-made")["status"]
    assert (status["phase"], status["taskId"]) == ("Submitted", made)
    assert status["message"] == f"Adopted FN task {made} made by an earlier attempt."
    assert poll(stack, sandbox, namespace).submitted == 0
    assert [task.id for task in fn_tasks_for(sandbox, namespace, "half-made")] == [made]
    assert get_task(stack, namespace, "half-made")["status"]["taskId"] == made


def test_an_fn_slower_than_the_budget_still_admits_within_the_webhook_timeout(
        stack, sandbox, namespace) -> None:
    budget = float(stack.env().get("FNTC_ADMISSION_BUDGET") or Settings().admission_budget)
    sandbox.fn_faults.add("GET", "/tasks", 503, {"error": "too slow"}, delay=budget + 5,
                          times=1)
    started = time.monotonic()
    result = stack.apply(task_manifest("slow-fn", namespace))
    took = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert "admitted as Pending" in result.stderr and "did not answer in time" in result.stderr
    assert took < budget + 4, f"admission took {took:.1f} s with a budget of {budget} s"
    _assert_pending(stack, namespace, "slow-fn")


# -- the first status, updates and deletes -----------------------------------------------


def test_get_right_after_apply_shows_the_fn_task_and_submitted(stack, sandbox,
                                                               namespace) -> None:
    assert stack.apply(task_manifest("quick", namespace)).returncode == 0
    [fn_task] = fn_tasks_for(sandbox, namespace, "quick")

    def row() -> list[str] | None:
        cells = stack.plane.kubectl("get", "tasks", "quick", "-n", namespace,
                                    "--no-headers").stdout.split()
        return cells if cells[1:3] == ["Submitted", str(fn_task.id)] else None

    # The status is written moments after the API server stores the Task; a
    # bounded wait only absorbs a loaded machine.
    assert eventually(row, timeout=3.0), "the first status did not appear"


def test_update_of_a_submitted_spec_is_refused_and_metadata_passes(stack, sandbox,
                                                                   namespace) -> None:
    assert stack.apply(task_manifest("frozen", namespace)).returncode == 0

    changed = stack.apply(task_manifest("frozen", namespace, dataset="cancer-registry"))
    assert changed.returncode != 0
    assert changed.stderr.strip().endswith(
        GUARD_DENIED + "the spec of a submitted Task cannot change, since the FN task "
        "already runs as written; create a new Task with a new name instead")
    assert get_task(stack, namespace, "frozen")["spec"]["dataset"] == 1

    kubectl = stack.plane.kubectl
    assert kubectl("label", "task", "frozen", "-n", namespace, "team=oncology",
                   check=False).returncode == 0
    assert kubectl("annotate", "task", "frozen", "-n", namespace, "note=reviewed",
                   check=False).returncode == 0
    task = get_task(stack, namespace, "frozen")
    assert task["metadata"]["labels"] == {"team": "oncology"}
    assert task["metadata"]["annotations"]["note"] == "reviewed"


@pytest.mark.parametrize("change", [f"{TASK_ID}=999", f"{TASK_ID}-", f"{ADMISSION_UID}=x",
                                    f"{SUBMISSION}-"],
                         ids=["task-id-changed", "task-id-removed", "admission-uid-changed",
                              "submission-removed"])
def test_fntc_annotations_cannot_change(stack, namespace, change: str) -> None:
    assert stack.apply(task_manifest("tied", namespace)).returncode == 0
    before = get_task(stack, namespace, "tied")["metadata"]["annotations"]
    result = stack.plane.kubectl("annotate", "--overwrite", "task", "tied", "-n", namespace,
                                 change, check=False)
    key = change.split("=")[0].rstrip("-")
    assert result.returncode != 0
    assert result.stderr.strip().endswith(
        GUARD_DENIED + f"annotation {key} is set by FNTC and cannot be changed; it ties the "
        "Task to its FN task")
    assert get_task(stack, namespace, "tied")["metadata"]["annotations"] == before


def test_delete_of_an_unfinished_task_cancels_its_fn_task(stack, sandbox, namespace) -> None:
    assert stack.apply(task_manifest("doomed", namespace)).returncode == 0
    [fn_task] = fn_tasks_for(sandbox, namespace, "doomed")
    result = stack.plane.kubectl("delete", "task", "doomed", "-n", namespace, check=False)
    assert result.returncode == 0, result.stderr
    assert eventually(lambda: fn_task.cancelled_at is not None), "the FN task was not cancelled"
    assert (fn_task.id, 201) in sandbox.fn_state.cancels


def test_delete_dry_run_cancels_nothing(stack, sandbox, namespace) -> None:
    assert stack.apply(task_manifest("kept", namespace)).returncode == 0
    [fn_task] = fn_tasks_for(sandbox, namespace, "kept")
    result = stack.plane.kubectl("delete", "task", "kept", "-n", namespace,
                                 "--dry-run=server", check=False)
    assert result.returncode == 0, result.stderr
    assert get_task(stack, namespace, "kept")["metadata"]["name"] == "kept"
    assert fn_task.cancelled_at is None and fn_task.id not in \
        [task_id for task_id, _ in sandbox.fn_state.cancels]


def test_forged_fntc_annotations_at_create_are_replaced(stack, sandbox, namespace) -> None:
    manifest = task_manifest("forged", namespace)
    manifest["metadata"]["annotations"] = {TASK_ID: "4242", ADMISSION_UID: "forged-uid",
                                           SUBMISSION: "deferred", "team": "oncology"}
    assert stack.apply(manifest).returncode == 0
    [fn_task] = fn_tasks_for(sandbox, namespace, "forged")
    annotations = get_task(stack, namespace, "forged")["metadata"]["annotations"]
    assert annotations[TASK_ID] == str(fn_task.id) != "4242"
    assert annotations[ADMISSION_UID] != "forged-uid"
    assert fn_task.description.endswith(f"uid={annotations[ADMISSION_UID]}")
    assert (annotations[SUBMISSION], annotations["team"]) == ("submitted", "oncology")


# -- in process: settings the shared webhook does not have --------------------------------


class NoTasks:
    """No Task of the reviewed name exists yet."""

    def get(self, namespace: str, name: str) -> dict | None:
        return None


@pytest.fixture
def make_admission(sandbox: Sandbox) -> Iterator[Callable[..., tuple[Admission, list]]]:
    """A real Admission against the stand-ins with extra FNTC_* settings; background
    jobs (status writes, cancels) are collected for the test to run."""
    clients: list[Any] = []

    def make(**env: str) -> tuple[Admission, list[Callable[[], None]]]:
        settings = Settings.from_env({**sandbox.env(), "FNTC_CLUSTER_NAME": "in-process",
                                      **env})
        keycloak = Keycloak.from_settings(settings)
        fn = FNClient(settings.fn_url, timeout=settings.request_timeout)
        clients.extend([keycloak, fn])
        jobs: list[Callable[[], None]] = []
        submitter = Submitter(settings, keycloak=keycloak, fn=fn)
        return Admission(settings, submitter=submitter, tasks=NoTasks(),  # type: ignore
                         run_later=jobs.append), jobs

    yield make
    for client in clients:
        client.close()


def review(operation: str, obj: dict | None = None, *, username: str = "alice",
           groups: tuple[str, ...] = (), old: dict | None = None,
           dry_run: bool = False) -> AdmissionRequest:
    meta = (obj or old or {}).get("metadata", {})
    return AdmissionRequest.parse({
        "apiVersion": API_VERSION, "kind": "AdmissionReview",
        "request": {"uid": str(uuid.uuid4()), "operation": operation,
                    "namespace": meta.get("namespace", "in-process"),
                    "name": meta.get("name", ""),
                    "userInfo": {"username": username, "groups": list(groups)},
                    "object": obj, "oldObject": old, "dryRun": dry_run}})


def patch_of(answer: AdmissionResponse) -> dict[str, Any]:
    """The annotations a CREATE answer sets (the map it adds, or its single keys)."""
    values: dict[str, Any] = {}
    for operation in answer.patch:
        if operation["path"] == "/metadata/annotations":
            values.update(operation["value"])
        elif operation["op"] == "add":
            values[operation["path"].rsplit("/", 1)[1].replace("~1", "/")] = \
                operation["value"]
    return values


ARGOCD = "system:serviceaccount:argocd:argocd-application-controller"


@pytest.mark.parametrize("username, groups, admitted", [
    (ARGOCD, ("system:serviceaccounts",), True),
    ("carol", ("fntc-creators",), True),
    ("alice", ("researchers",), False),
    ("", (), False),
], ids=["argocd-by-name", "member-of-allowed-group", "someone-else", "anonymous"])
def test_requester_allow_list(make_admission, sandbox, username: str,
                              groups: tuple[str, ...], admitted: bool) -> None:
    admission, _ = make_admission(FNTC_ALLOWED_REQUESTERS=f"{ARGOCD}, fntc-creators")
    name = f"allow-{uuid.uuid4().hex[:6]}"
    submissions = len(sandbox.fn_state.submissions)
    answer = admission.review(review("CREATE", task_manifest(name, "in-process"),
                                     username=username, groups=groups))
    assert answer.allowed is admitted
    if admitted:
        assert patch_of(answer)[SUBMISSION] == "submitted"
        assert len(sandbox.fn_state.submissions) == submissions + 1
    else:
        who = username or "this requester"
        assert answer.message == (f"{who} may not create Tasks: a Task acts for the "
                                  "researcher it names, so only the identities in "
                                  "FNTC_ALLOWED_REQUESTERS (such as ArgoCD) may")
        assert len(sandbox.fn_state.submissions) == submissions


def test_allow_list_does_not_guard_updates_or_deletes(make_admission) -> None:
    admission, _ = make_admission(FNTC_ALLOWED_REQUESTERS=ARGOCD)
    task = task_manifest("existing", "in-process")
    assert admission.review(review("UPDATE", task, old=task, username="alice")).allowed
    assert admission.review(review("DELETE", None, old=task, username="alice")).allowed


@pytest.mark.parametrize("system, path", [("fn", "/tasks"),
                                          ("keycloak", "/admin/realms/FederatedNode/users")],
                         ids=["slow-fn", "slow-keycloak"])
def test_a_slow_system_defers_inside_the_budget(make_admission, sandbox, system: str,
                                                path: str) -> None:
    admission, _ = make_admission(FNTC_ADMISSION_BUDGET="1")
    faults = sandbox.fn_faults if system == "fn" else sandbox.keycloak_faults
    faults.add("GET", path, 503, {"error": "late"}, delay=4, times=5)
    submissions = len(sandbox.fn_state.submissions)

    started = time.monotonic()
    answer = admission.review(review("CREATE", task_manifest("slow", "in-process")))
    took = time.monotonic() - started

    assert took < 1.8, f"the admission took {took:.2f} s with a budget of 1 s"
    assert answer.allowed and answer.outcome == "deferred"
    assert patch_of(answer)[SUBMISSION] == "deferred" and TASK_ID not in patch_of(answer)
    assert any("did not answer in time" in warning for warning in answer.warnings)
    assert len(sandbox.fn_state.submissions) == submissions


@pytest.mark.parametrize("method, path, status, body, outcome, says", [
    ("GET", "/tasks", 429, {"error": "slow down"}, "deferred", "try again later"),
    ("GET", "/tasks", 200, "<html>proxy</html>", "deferred", "cannot read"),
    ("GET", "/tasks", 200, {"items": "none", "pages": "x"}, "deferred", "unknown shape"),
    ("POST", "/tasks/validate", 504, "Gateway Timeout", "deferred", "(504)"),
    ("POST", "/tasks/validate", 404, {"error": "Dataset 9 does not exist"}, "refused",
     "the Federated Node refused the task: it has no dataset 9; check spec.dataset"),
    ("POST", "/tasks/validate", 500, {"error": "Image x could not be found"}, "refused",
     "image x is not on the FN's allow-list or its tag does not exist"),
], ids=["429-defers", "html-defers", "odd-list-defers", "504-defers", "404-refuses",
        "definitive-500-refuses"])
def test_how_fn_answers_at_admission_are_read(make_admission, sandbox, method: str,
                                              path: str, status: int, body: Any,
                                              outcome: str, says: str) -> None:
    admission, _ = make_admission()
    sandbox.fn_faults.add(method, path, status, body, times=1)
    answer = admission.review(review("CREATE", task_manifest(f"fn-{status}", "in-process")))
    assert answer.outcome == outcome
    assert says in (answer.message if outcome == "refused" else " ".join(answer.warnings))


def test_a_spent_budget_stops_before_the_next_call(make_admission, sandbox) -> None:
    admission, _ = make_admission(FNTC_ADMISSION_BUDGET="0")
    start = len(sandbox.fn_state.requests)
    answer = admission.review(review("CREATE", task_manifest("no-time", "in-process")))
    assert answer.outcome == "deferred"
    assert any("the time budget ran out before" in warning for warning in answer.warnings)
    assert fn_requests_since(sandbox, start) == []


@pytest.mark.parametrize("user", [{}, {"name": "alice"}, {"email": "", "username": ""},
                                  {"email": None, "githubId": ""}],
                         ids=["empty", "unknown-field", "blank-fields", "null-fields"])
def test_a_missing_user_field_never_reaches_keycloak(make_admission, sandbox,
                                                     user: dict) -> None:
    admission, _ = make_admission()
    start = len(sandbox.keycloak_state.requests)
    answer = admission.review(review("CREATE", task_manifest("nobody", "in-process",
                                                             user=user)))
    assert not answer.allowed
    assert "spec.user needs an email or a username" in answer.message
    with sandbox.keycloak_state.lock:
        lookups = [request for request in sandbox.keycloak_state.requests[start:]
                   if request.path.endswith("/users")]
    assert lookups == []


def test_a_github_lookup_is_confirmed_by_the_link_itself(sandbox) -> None:
    keycloak = Keycloak.from_settings(Settings.from_env(sandbox.env()))
    try:
        with pytest.raises(UnknownUser, match="the Task names no user"):
            keycloak.find_user(email="", username="", github_id="")
        alice = keycloak.find_user(email="alice@example.org")
        # A Keycloak that ignores idpAlias/idpUserId answers with whoever it has.
        sandbox.keycloak_faults.add("GET", "/admin/realms/FederatedNode/users", 200,
                                    [{"id": alice.id, "username": alice.username,
                                      "email": alice.email, "enabled": True}], times=1)
        with pytest.raises(UnknownUser, match="no Keycloak user linked to GitHub user 777"):
            keycloak.find_user(github_id="777")
        carol = keycloak.find_user(github_id="5551234")
        assert carol.email == "carol@example.org"
    finally:
        keycloak.close()


def test_no_token_or_secret_reaches_the_logs(make_admission, sandbox, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    admission, jobs = make_admission()
    submitted = admission.review(review("CREATE", task_manifest("logged", "in-process")))
    assert submitted.outcome == "submitted"
    admission.review(review("CREATE", task_manifest("logged-dry", "in-process"),
                            dry_run=True))
    sandbox.fn_faults.add("*", "/tasks", 503, {"error": "down"}, times=5)
    assert admission.review(review("CREATE", task_manifest("logged-down", "in-process"))
                            ).outcome == "deferred"
    sandbox.fn_faults.clear()
    old = task_manifest("logged", "in-process")
    old["metadata"]["annotations"] = {TASK_ID: patch_of(submitted)[TASK_ID],
                                      ADMISSION_UID: patch_of(submitted)[ADMISSION_UID]}
    jobs.clear()
    admission.review(review("DELETE", None, old=old))
    assert len(jobs) == 1
    jobs[0]()                         # the cancel, with the admin token
    jobs[0]()                         # "already cancelled": a failed cancel is logged too
    assert any("did not cancel" in record.getMessage() for record in caplog.records)

    keycloak = admission.submitter.keycloak
    secrets = [sandbox.keycloak_state.client_secret, sandbox.keycloak_state.admin_password,
               *keycloak._admin_tokens[:2],                             # noqa: SLF001
               *(token for token, _ in keycloak._user_tokens.values())]  # noqa: SLF001
    assert len(secrets) >= 5 and caplog.records
    formatters = [logs.TextFormatter(), logs.JSONFormatter()]
    for record in caplog.records:
        for text in [formatter.format(record) for formatter in formatters]:
            assert not any(secret in text for secret in secrets), text
            assert not JWT.search(text), text


def test_the_webhook_process_log_holds_no_token(stack) -> None:
    text = (stack.plane.work_dir / "webhook.log").read_text()
    assert "admission" in text
    assert not JWT.search(text)
    env = stack.env()
    for name in ("FNTC_KEYCLOAK_CLIENT_SECRET", "FNTC_KEYCLOAK_ADMIN_PASSWORD"):
        assert env[name] not in text
