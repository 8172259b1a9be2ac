"""Turning a checked Task spec into exactly one FN task, for the right user.

Both the webhook (at admission) and the poller (for Tasks deferred at
admission) submit through :class:`Submitter`, so the rules are the same:
find the researcher in Keycloak, act with their token, let the FN validate
first, and never create a second FN task for a marker that already has one.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from enum import Enum
from typing import Callable

from .errors import ServiceError
from .fn import FNAuthFailed, FNClient, FNRejected, FNUnavailable, task_body
from .keycloak import FN_ADMINISTRATOR_ROLE, Keycloak, KeycloakUser, UnknownUser
from .settings import Settings
from .task import Marker, TaskSpec

log = logging.getLogger(__name__)


class Outcome(str, Enum):
    SUBMITTED = "Submitted"    # an FN task exists for this Task (new or found)
    VALIDATED = "Validated"    # dry run: everything checked, nothing created
    REFUSED = "Refused"        # the Task cannot run as written; say why
    DEFERRED = "Deferred"      # someone was unreachable; try again later


@dataclass(frozen=True)
class Submission:
    outcome: Outcome
    message: str = ""
    task_id: int | None = None
    adopted: bool = False
    #: Things the researcher should know about a task the FN accepted.
    warnings: tuple[str, ...] = ()


_IMAGE_NOT_FOUND = re.compile(r"^Image (?P<image>\S+) could not be found")
_NO_DATASET = re.compile(r"^Dataset (?P<dataset>.+) does not exist")


def explain_refusal(reason: str, spec: TaskSpec) -> str:
    """The FN's refusal, with what to do about it where the FN's own words leave it out."""
    if reason.startswith("Could not find project"):
        return f"it has no project {spec.project!r}; check spec.project"
    if reason.startswith("User does not belong to a valid project"):
        return (f"{spec.requester} does not belong to the FN project {spec.project!r}; "
                "ask the FN operators for access to that project")
    if match := _IMAGE_NOT_FOUND.match(reason):
        return (f"image {match['image']} is not on the FN's allow-list or its tag does not "
                "exist; use an allowed image, or ask the FN operators to allow this one")
    if match := _NO_DATASET.match(reason):
        return f"it has no dataset {match['dataset']}; check spec.dataset"
    return reason


class BudgetSpent(ServiceError):
    """The time budget ran out between two calls; the work can be done later."""

    service = "fntc"

    def __init__(self, message: str) -> None:
        super().__init__(message, transient=True)


class Deadline:
    """What is left of a time budget, handed to each outside call as its timeout.

    NB: httpx applies a timeout to each phase of a request (connect, send,
    read) rather than to the whole, so one call can overrun what is left by
    a little; :meth:`check` between calls keeps the sum bounded.
    """

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._end = clock() + seconds

    def remaining(self, floor: float = 0.2) -> float:
        return max(self._end - self._clock(), floor)

    @property
    def expired(self) -> bool:
        return self._clock() >= self._end

    def check(self, before: str) -> None:
        """Raise :class:`BudgetSpent` when nothing is left for the next call."""
        if self.expired:
            raise BudgetSpent(f"the time budget ran out before {before}")


class Submitter:
    def __init__(self, settings: Settings, *, keycloak: Keycloak, fn: FNClient) -> None:
        self.settings = settings
        self.keycloak = keycloak
        self.fn = fn

    def identify(self, spec: TaskSpec, deadline: Deadline) -> KeycloakUser:
        return self.keycloak.find_user(email=spec.email, username=spec.username,
                                       github_id=spec.github_id,
                                       github_alias=self.settings.github_idp_alias,
                                       timeout=deadline.remaining())

    def _made_for(self, admin: str, marker: Marker, deadline: Deadline) -> set[int]:
        """Ids of the FN tasks made for this Task. Looked up by name (the FN task's
        name is the Task's) and matched on the marker's namespace, name and uid, not
        its cluster name, which may have been renamed since."""
        found = self.fn.find(admin, name__eq=marker.name, timeout=deadline.remaining())
        ids = set()
        for item in found:
            made_for = Marker.parse(item.get("description"))
            task_id = item.get("id")
            if made_for and made_for.names_same_task(marker) and \
                    isinstance(task_id, int) and not isinstance(task_id, bool):
                ids.add(task_id)
        return ids

    def find_existing(self, marker: Marker, deadline: Deadline) -> int | None:
        """The FN task already made for this marker, if any (admin view of the FN)."""
        admin = self.keycloak.admin_fn_token(timeout=deadline.remaining())
        ids = sorted(self._made_for(admin, marker, deadline))
        return self._keep_lowest(admin, ids, marker, deadline) if ids else None

    def _keep_lowest(self, admin: str, ids: list[int], marker: Marker,
                     deadline: Deadline) -> int:
        """Of several FN tasks made for one marker, keep the lowest id and cancel the rest.

        The API server can send one admission again (after a timeout or a dropped
        connection) and the second call can reach the other webhook replica, so both
        create. Each looks again after creating; as the FN numbers tasks in order,
        the later one always sees the earlier, and both settle on the lowest id.
        """
        keep, *extra = ids
        fields = {"namespace": marker.namespace, "task": marker.name, "fn_task_id": keep}
        for task_id in extra:
            try:
                self.fn.cancel(admin, task_id, timeout=deadline.remaining(floor=1.0))
                log.warning("cancelled FN task %s, a second one for this Task", task_id,
                            extra=fields)
            except ServiceError as error:
                log.warning("could not cancel FN task %s, a second one for this Task: %s",
                            task_id, error, extra=fields)
        return keep

    def _settle(self, marker: Marker, created: int, deadline: Deadline) -> int | None:
        """The FN task this marker keeps, once ``created`` exists: see :meth:`_keep_lowest`.

        None when the look-up failed: another attempt may have made a task at the
        same time and may keep that one, so ``created`` cannot be promised. The caller
        defers; the poller then finds every task made for the marker and settles."""
        try:
            admin = self.keycloak.admin_fn_token(timeout=deadline.remaining(floor=1.0))
            ids = self._made_for(admin, marker, deadline)
        except ServiceError as error:
            log.warning("could not look for a second FN task for this Task: %s", error,
                        extra={"namespace": marker.namespace, "task": marker.name,
                               "fn_task_id": created})
            return None
        return self._keep_lowest(admin, sorted(ids | {created}), marker, deadline)

    def _create(self, user: KeycloakUser, token: str, spec: TaskSpec, body: dict,
                deadline: Deadline) -> int:
        """Create the FN task; a token refused right after validation passed has
        expired or been revoked meanwhile, so one fresh token is tried, and a second
        refusal is a passing fault (the identity was just accepted), never a refusal."""
        try:
            return self.fn.create(token, spec.project, body, timeout=deadline.remaining())
        except FNAuthFailed:
            self.keycloak.forget_user_token(user)
            deadline.check("creating the FN task again")
            token = self.keycloak.fn_token_for(user, timeout=deadline.remaining())
            try:
                return self.fn.create(token, spec.project, body,
                                      timeout=deadline.remaining())
            except FNAuthFailed as error:
                raise FNUnavailable("the FN refused a fresh token right after accepting "
                                    f"the task: {error}") from error

    def _dataset_warnings(self, token: str, spec: TaskSpec, task_id: int,
                          deadline: Deadline) -> tuple[str, ...]:
        """A researcher's FN task runs on the dataset their project grants, whatever the
        Task names; say so when the two differ. The FN shows only the id it used, so a
        dataset named in the Task cannot be compared: say which id it runs on instead.
        A failed look-up only costs the warning."""
        if deadline.expired:
            return ()
        try:
            view = self.fn.get(token, task_id, timeout=deadline.remaining())
        except ServiceError as error:
            log.info("could not read FN task %s to compare its dataset: %s", task_id, error)
            return ()
        actual = view.get("dataset_id")
        if isinstance(actual, bool) or not isinstance(actual, int) or \
                actual == spec.dataset_id:
            return ()
        if spec.dataset_id is None:
            return (f"the FN runs this task on dataset {actual}, the one {spec.project} "
                    f"grants; FNTC cannot check that it is the dataset named "
                    f"{spec.dataset_name!r}",)
        return (f"the FN runs this task on dataset {actual}, the one {spec.project} grants, "
                f"not {spec.dataset_id}",)

    def _administrator(self, user: KeycloakUser, spec: TaskSpec, *, token_roles: bool,
                       deadline: Deadline) -> Submission | None:
        """A refusal when ``user`` administers the FN. An admin's FN token picks any
        dataset named in the task and skips the project's data access rules."""
        admin = self.keycloak.is_admin_login(user)
        if not admin and token_roles:
            roles = self.keycloak.realm_roles(user, timeout=deadline.remaining()) or ()
            admin = FN_ADMINISTRATOR_ROLE in roles
        if not admin:
            return None
        return Submission(Outcome.REFUSED, f"{spec.requester} is an administrator of the "
                          "Federated Node; Tasks must run as a researcher, not an FN "
                          "administrator, so that the project's data access applies")

    def submit(self, spec: TaskSpec, marker: Marker, *, deadline: Deadline,
               dry_run: bool = False) -> Submission:
        """Validate with the FN and, unless ``dry_run``, create the FN task once."""
        who = spec.requester
        try:
            user = self.identify(spec, deadline)
            refused = self._administrator(user, spec, token_roles=False, deadline=deadline)
            if refused:
                return refused
            deadline.check("obtaining the researcher's token")
            token = self.keycloak.fn_token_for(user, timeout=deadline.remaining())
            refused = self._administrator(user, spec, token_roles=True, deadline=deadline)
            if refused:
                return refused
            body = task_body(spec, name=marker.name, marker=marker)

            if not dry_run:
                # A retried admission or a rerun of the poller must find what an
                # earlier attempt created instead of creating it again.
                deadline.check("looking for an FN task made earlier")
                existing = self.find_existing(marker, deadline)
                if existing is not None:
                    return Submission(Outcome.SUBMITTED, f"found FN task {existing}",
                                      existing, adopted=True,
                                      warnings=self._dataset_warnings(token, spec, existing,
                                                                      deadline))

            deadline.check("asking the FN to validate the task")
            try:
                self.fn.validate(token, spec.project, body, timeout=deadline.remaining())
            except FNAuthFailed:
                # A cached token the FN stopped accepting (revoked, Keycloak
                # restarted): exchange a fresh one once before giving up.
                self.keycloak.forget_user_token(user)
                deadline.check("asking the FN to validate the task again")
                token = self.keycloak.fn_token_for(user, timeout=deadline.remaining())
                self.fn.validate(token, spec.project, body, timeout=deadline.remaining())
            if dry_run:
                return Submission(Outcome.VALIDATED, "the FN would accept this task")
            deadline.check("creating the FN task")
            created = self._create(user, token, spec, body, deadline)
        except UnknownUser as error:
            return Submission(Outcome.REFUSED, f"{error}; the Task must name a researcher "
                              "known to the Federated Node")
        except FNAuthFailed as error:
            return Submission(Outcome.REFUSED, f"the FN would not accept {who}'s identity "
                              f"({error}); check that the user may use project "
                              f"{spec.project!r}")
        except FNRejected as error:
            return Submission(Outcome.REFUSED, "the Federated Node refused the task: "
                              + explain_refusal(str(error), spec))
        except ServiceError as error:
            if error.transient:
                return Submission(Outcome.DEFERRED, str(error))
            return Submission(Outcome.REFUSED, str(error))

        # The FN task exists from here on: nothing below may lose its id.
        task_id = self._settle(marker, created, deadline)
        if task_id is None:
            return Submission(Outcome.DEFERRED, f"created FN task {created} but could not "
                              "check that no other attempt made one too; the poller will")
        message = (f"created FN task {task_id}" if task_id == created else
                   f"found FN task {task_id}, made at the same time by another attempt")
        return Submission(Outcome.SUBMITTED, message, task_id, adopted=task_id != created,
                          warnings=self._dataset_warnings(token, spec, task_id, deadline))
