"""Admission decisions in process, against the FN and Keycloak stand-ins: who a Task may
run as, where it may live, what the FN really runs, duplicates from two replicas, and a
DELETE that cancels only the FN task of a Task that is really gone.

No API server here: a small in-memory store plays the Tasks the API server holds, and
the cancel's wait runs on a clock the test moves.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any, Callable

import pytest

from standins.keycloak import KeycloakUser, seed_user_id
from standins.sandbox import Sandbox
from taskcore.fn import FNClient
from taskcore.keycloak import Keycloak, realm_roles_in
from taskcore.settings import Settings
from taskcore.submission import Submitter, explain_refusal
from taskcore.task import review_spec
from tests.conftest import task_manifest
from webhook.admission import Admission
from webhook.cancellation import Canceller
from webhook.review import API_VERSION, AdmissionRequest, AdmissionResponse

NAMESPACE = "research"
TASK_ID = "tasks.federatednode.com/task-id"
ADMISSION_UID = "tasks.federatednode.com/admission-uid"
SUBMISSION = "tasks.federatednode.com/submission"


class StoredTasks:
    """The Tasks the API server holds, by namespace and name; ``vanish_after`` makes a
    Task disappear after that many reads, as a deletion completing would."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.reads = 0
        self.vanish_after: int | None = None

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.reads += 1
        if self.vanish_after is not None and self.reads >= self.vanish_after:
            self.objects.pop((namespace, name), None)
        return self.objects.get((namespace, name))


class ManualTime:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class Harness:
    """A real Admission over the stand-ins, with the store, clock and jobs in view."""

    def __init__(self, sandbox: Sandbox, **env: str) -> None:
        self.sandbox = sandbox
        self.settings = Settings.from_env({**sandbox.env(), "FNTC_CLUSTER_NAME": "in-process",
                                           **env})
        self.keycloak = Keycloak.from_settings(self.settings)
        self.fn = FNClient(self.settings.fn_url, timeout=self.settings.request_timeout)
        self.tasks = StoredTasks()
        self.time = ManualTime()
        self.jobs: list[Callable[[], Any]] = []
        self.admission = self.replica()

    def replica(self) -> Admission:
        """Another webhook process: its own memory of answered uids, the same systems."""
        submitter = Submitter(self.settings, keycloak=self.keycloak, fn=self.fn)
        canceller = Canceller(self.tasks, keycloak=self.keycloak,  # type: ignore[arg-type]
                              fn=self.fn, clock=self.time.clock, sleep=self.time.sleep)
        return Admission(self.settings, submitter=submitter, tasks=self.tasks,  # type: ignore
                         canceller=canceller, run_later=self.jobs.append)

    def create(self, name: str, namespace: str = NAMESPACE, *, uid: str | None = None,
               dry_run: bool = False, **spec: Any) -> AdmissionResponse:
        return self.admission.review(review("CREATE", task_manifest(name, namespace, **spec),
                                            uid=uid, dry_run=dry_run))

    def store(self, name: str, answer: AdmissionResponse, *, uid: str = "object-uid-1",
              namespace: str = NAMESPACE) -> dict[str, Any]:
        """Store the Task as the API server would after ``answer`` admitted it."""
        task = task_manifest(name, namespace)
        task["metadata"].update(uid=uid, annotations=annotations_of(answer))
        self.tasks.objects[namespace, name] = task
        return task

    def fn_task(self, task_id: int) -> Any:
        return self.sandbox.fn_state.tasks[task_id]

    def close(self) -> None:
        self.keycloak.close()
        self.fn.close()


@pytest.fixture
def harness(sandbox: Sandbox) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(**env: str) -> Harness:
        made.append(Harness(sandbox, **env))
        return made[-1]

    yield make
    for each in made:
        each.close()


def review(operation: str, obj: dict | None = None, *, old: dict | None = None,
           uid: str | None = None, dry_run: bool = False) -> AdmissionRequest:
    meta = (obj or old or {}).get("metadata", {})
    return AdmissionRequest.parse({
        "apiVersion": API_VERSION, "kind": "AdmissionReview",
        "request": {"uid": uid or str(uuid.uuid4()), "operation": operation,
                    "namespace": meta.get("namespace", NAMESPACE), "name": meta.get("name", ""),
                    "userInfo": {"username": "argocd", "groups": []},
                    "object": obj, "oldObject": old, "dryRun": dry_run}})


def annotations_of(answer: AdmissionResponse) -> dict[str, str]:
    values: dict[str, str] = {}
    for operation in answer.patch:
        if operation["path"] == "/metadata/annotations":
            values.update(operation["value"])
        elif operation["op"] == "add":
            values[operation["path"].rsplit("/", 1)[1].replace("~1", "/")] = operation["value"]
    return values


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def fn_tasks_with(sandbox: Sandbox, uid: str) -> list[Any]:
    with sandbox.fn_state.lock:
        return sorted((task for task in sandbox.fn_state.tasks.values()
                       if (task.description or "").endswith(f" uid={uid}")),
                      key=lambda task: task.id)


# -- who a Task may run as ---------------------------------------------------------------


@pytest.mark.parametrize("user, shown_as", [
    ({"username": "fn-admin"}, "fn-admin"),
    ({"email": "fn-admin@sandbox.local"}, "fn-admin@sandbox.local"),
], ids=["by-username", "by-email"])
@pytest.mark.parametrize("dry_run", [False, True], ids=["apply", "dry-run"])
def test_the_configured_keycloak_admin_is_refused(harness, sandbox, user: dict,
                                                  shown_as: str, dry_run: bool) -> None:
    admission = harness()
    start = len(sandbox.fn_state.requests)
    answer = admission.create(unique("as-admin"), user=user, dataset=2, dry_run=dry_run)
    assert not answer.allowed
    assert answer.message == (f"Task refused: {shown_as} is an administrator of the "
                              "Federated Node; Tasks must run as a researcher, not an FN "
                              "administrator, so that the project's data access applies")
    assert answer.warnings == []
    assert sandbox.fn_state.requests[start:] == []


@pytest.fixture
def second_administrator(sandbox: Sandbox) -> Iterator[str]:
    """A user holding the FN's Administrator realm role who is not FNTC's own login."""
    user = KeycloakUser(id=seed_user_id("ops@example.org"), username="ops@example.org",
                        email="ops@example.org", realm_roles=["Administrator"])
    with sandbox.keycloak_state.lock:
        sandbox.keycloak_state.users.append(user)
    yield user.email
    with sandbox.keycloak_state.lock:
        sandbox.keycloak_state.users.remove(user)


def test_a_holder_of_the_administrator_role_is_refused(harness, sandbox,
                                                       second_administrator: str) -> None:
    admission = harness()
    start = len(sandbox.fn_state.requests)
    answer = admission.create(unique("as-ops"), user={"email": second_administrator})
    assert not answer.allowed
    assert answer.message.startswith(f"Task refused: {second_administrator} is an "
                                     "administrator of the Federated Node; Tasks must run "
                                     "as a researcher, not an FN administrator")
    assert sandbox.fn_state.requests[start:] == []


def test_roles_are_read_from_the_access_token_of_the_exchange(harness) -> None:
    keycloak = harness().keycloak
    alice = keycloak.find_user(email="alice@example.org")
    admin = keycloak.find_user(username="fn-admin")
    assert "Administrator" not in (keycloak.realm_roles(alice) or ())
    assert "Administrator" in (keycloak.realm_roles(admin) or ())
    assert realm_roles_in("not-a-token") is None and realm_roles_in(None) is None


# -- where a Task may live ---------------------------------------------------------------


def test_a_task_outside_the_served_namespaces_is_refused(harness, sandbox) -> None:
    admission = harness(FNTC_NAMESPACES="research, clinic")
    start = len(sandbox.fn_state.requests)
    answer = admission.create(unique("elsewhere"), "scratch")
    assert not answer.allowed
    assert answer.message == ("FNTC serves Tasks only in the namespaces research, clinic; "
                              "create the Task there, not in scratch")
    assert sandbox.fn_state.requests[start:] == []
    assert admission.create(unique("served"), "clinic").allowed

    single = harness(FNTC_NAMESPACES="research")
    assert single.create(unique("elsewhere"), "scratch").message == (
        "FNTC serves Tasks only in the namespace research; create the Task there, "
        "not in scratch")


# -- what the FN runs, and what it refuses -----------------------------------------------


def test_a_dataset_id_the_project_does_not_grant_is_admitted_with_a_warning(harness) -> None:
    made = harness()
    answer = made.create(unique("other-data"), dataset=99)
    assert answer.allowed
    fn_task = made.fn_task(int(annotations_of(answer)[TASK_ID]))
    assert fn_task.dataset_id == 1
    assert "the FN runs this task on dataset 1, the one project1 grants, not 99" in \
        answer.warnings


@pytest.mark.parametrize("dataset", [1, "1"], ids=["granted-id", "granted-id-as-text"])
def test_no_dataset_warning_where_ids_agree(harness, dataset) -> None:
    answer = harness().create(unique("same-data"), dataset=dataset)
    assert answer.allowed
    assert not any("dataset" in warning for warning in answer.warnings), answer.warnings


def test_a_named_dataset_is_admitted_saying_which_id_the_fn_runs_on(harness) -> None:
    answer = harness().create(unique("named-data"), dataset="hospital-admissions")
    assert answer.allowed
    assert [warning for warning in answer.warnings if "dataset" in warning] == [
        "the FN runs this task on dataset 1, the one project1 grants; FNTC cannot check "
        "that it is the dataset named 'hospital-admissions'"]


def test_an_fn_refusal_carries_no_warnings(harness) -> None:
    answer = harness().create(unique("no-project"), project="project9")
    assert not answer.allowed and answer.warnings == []
    assert answer.message == ("Task refused: the Federated Node refused the task: it has no "
                              "project 'project9'; check spec.project")


@pytest.mark.parametrize("reason, explained", [
    ("Could not find project", "it has no project 'project7'; check spec.project"),
    ("User does not belong to a valid project",
     "alice@example.org does not belong to the FN project 'project7'; ask the FN operators "
     "for access to that project"),
    ("Image ghcr.io/org/miner:2.0 could not be found",
     "image ghcr.io/org/miner:2.0 is not on the FN's allow-list or its tag does not exist; "
     "use an allowed image, or ask the FN operators to allow this one"),
    ("Dataset 9 does not exist", "it has no dataset 9; check spec.dataset"),
    ("Registry quay.io is not registered on this node",
     "Registry quay.io is not registered on this node"),
], ids=["project", "membership", "image", "dataset", "other"])
def test_fn_refusals_say_what_to_do(reason: str, explained: str) -> None:
    spec = review_spec("summary", {**task_manifest("summary", NAMESPACE)["spec"],
                                   "project": "project7"}).spec
    assert spec is not None
    assert explain_refusal(reason, spec) == explained


# -- two replicas, one admission ---------------------------------------------------------


def test_two_replicas_answering_one_admission_leave_one_live_fn_task(harness,
                                                                     sandbox) -> None:
    made = harness()
    replicas = [made.admission, made.replica()]
    name, uid = unique("twice"), str(uuid.uuid4())
    request = review("CREATE", task_manifest(name, NAMESPACE), uid=uid)
    # Both pass validation, then both creates are slow and overlap.
    sandbox.fn_faults.add("POST", "/tasks/validate", 0, times=2)
    sandbox.fn_faults.add("POST", "/tasks", 0, delay=0.5, times=2)

    answers: list[AdmissionResponse] = []
    threads = [threading.Thread(target=lambda replica=replica: answers.append(
        replica.review(request))) for replica in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    made_for_it = fn_tasks_with(sandbox, uid)
    assert len(made_for_it) == 2, "the test needs both replicas to have created"
    live = [task for task in made_for_it if task.cancelled_at is None]
    assert [task.id for task in live] == [made_for_it[0].id]
    assert [annotations_of(answer)[TASK_ID] for answer in answers] == \
        [str(made_for_it[0].id)] * 2


# -- DELETE ------------------------------------------------------------------------------


def _delete(made: Harness, task: dict[str, Any]) -> AdmissionResponse:
    made.jobs.clear()
    return made.admission.review(review("DELETE", None, old=task))


def test_delete_cancels_once_the_task_is_gone(harness) -> None:
    made = harness()
    name = unique("doomed")
    created = made.create(name)
    task = made.store(name, created)
    task_id = int(task["metadata"]["annotations"][TASK_ID])

    answer = _delete(made, task)
    assert answer.allowed and answer.warnings == [
        f"FNTC will ask the FN to cancel task {task_id} once the Task is gone"]
    assert made.fn_task(task_id).cancelled_at is None     # nothing before the job runs
    made.tasks.vanish_after = made.tasks.reads + 3        # deleted after a few looks
    [job] = made.jobs
    assert job() is True
    assert made.fn_task(task_id).cancelled_at is not None
    assert made.time.now < 5


def test_delete_counts_a_new_task_of_the_same_name_as_gone(harness) -> None:
    made = harness()
    name = unique("renewed")
    task = made.store(name, made.create(name))
    task_id = int(task["metadata"]["annotations"][TASK_ID])
    _delete(made, task)
    made.tasks.objects[NAMESPACE, name] = {"metadata": {"name": name, "uid": "object-uid-2"}}
    assert made.jobs[0]() is True
    assert made.fn_task(task_id).cancelled_at is not None


def test_a_delete_that_never_completes_cancels_nothing(harness) -> None:
    made = harness()
    name = unique("kept")
    task = made.store(name, made.create(name))
    task_id = int(task["metadata"]["annotations"][TASK_ID])
    _delete(made, task)
    assert made.jobs[0]() is False              # the Task is still stored after 60 s
    assert 60 <= made.time.now < 62
    assert made.fn_task(task_id).cancelled_at is None


def test_a_delete_without_the_object_uid_waits_for_absence(harness) -> None:
    made = harness()
    name = unique("uid-less")
    task = made.store(name, made.create(name))
    task_id = int(task["metadata"]["annotations"][TASK_ID])
    forged = {**task, "metadata": {key: value for key, value in task["metadata"].items()
                                   if key != "uid"}}
    _delete(made, forged)
    assert made.jobs[0]() is False
    assert made.fn_task(task_id).cancelled_at is None


def test_a_forged_delete_naming_another_tasks_fn_task_cancels_nothing(harness) -> None:
    made = harness()
    victim_name = unique("victim")
    victim = made.store(victim_name, made.create(victim_name))
    victim_id = int(victim["metadata"]["annotations"][TASK_ID])

    # A review for a Task that does not exist, naming the victim's FN task.
    forged = task_manifest(unique("forged"), NAMESPACE)
    forged["metadata"].update(uid="forged-uid", annotations={
        TASK_ID: str(victim_id), ADMISSION_UID: victim["metadata"]["annotations"][ADMISSION_UID]})
    forged["status"] = {"phase": "Running", "taskId": victim_id}
    answer = _delete(made, forged)
    assert answer.allowed
    assert made.jobs[0]() is False
    assert made.fn_task(victim_id).cancelled_at is None


def test_a_delete_without_our_annotations_schedules_nothing(harness) -> None:
    made = harness()
    task = task_manifest(unique("bare"), NAMESPACE)
    task["status"] = {"phase": "Running", "taskId": 7}
    answer = _delete(made, task)
    assert answer.allowed and answer.warnings == [] and made.jobs == []


def test_work_after_answers_runs_on_a_bounded_pool_of_threads() -> None:
    from webhook import admission as admission_module

    release = threading.Event()
    started: list[str] = []
    lock = threading.Lock()

    def job() -> None:
        with lock:
            started.append(threading.current_thread().name)
        release.wait(5)

    pool = admission_module._background_pool()
    futures = [pool.submit(job) for _ in range(admission_module.BACKGROUND_WORKERS * 3)]
    try:
        # Every worker picks a job up and blocks; the rest wait in the queue.
        for _ in range(200):
            if len(started) >= admission_module.BACKGROUND_WORKERS:
                break
            release.wait(0.01)
        assert len(started) == admission_module.BACKGROUND_WORKERS
        assert all(name.startswith("after-answer") for name in started)
    finally:
        release.set()
        for future in futures:
            future.result(5)
    assert len(started) == admission_module.BACKGROUND_WORKERS * 3
