"""Turning a checked Task spec into exactly one FN task, for the right user.

Both the webhook (at admission) and the poller (for Tasks deferred at
admission) submit through :class:`Submitter`, so the rules are the same:
find the researcher in Keycloak, act with their token, let the FN validate
first, and never create a second FN task for a marker that already has one.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from enum import Enum
from typing import Callable

from .errors import ServiceError
from .fn import FNAuthFailed, FNClient, FNRejected, task_body
from .keycloak import Keycloak, KeycloakUser, UnknownUser
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

    def find_existing(self, marker: Marker, deadline: Deadline) -> int | None:
        """The FN task already made for this marker, if any (admin view of the FN)."""
        admin = self.keycloak.admin_fn_token(timeout=deadline.remaining())
        found = self.fn.find(admin, description__eq=str(marker), timeout=deadline.remaining())
        ids = sorted(int(item["id"]) for item in found if isinstance(item.get("id"), int))
        if len(ids) > 1:
            log.warning("several FN tasks carry one marker; using the oldest",
                        extra={"namespace": marker.namespace, "task": marker.name,
                               "fn_task_ids": ids})
        return ids[0] if ids else None

    def submit(self, spec: TaskSpec, marker: Marker, *, deadline: Deadline,
               dry_run: bool = False) -> Submission:
        """Validate with the FN and, unless ``dry_run``, create the FN task once."""
        who = spec.requester
        try:
            user = self.identify(spec, deadline)
            deadline.check("obtaining the researcher's token")
            token = self.keycloak.fn_token_for(user, timeout=deadline.remaining())
            body = task_body(spec, name=marker.name, marker=marker)

            if not dry_run:
                # A retried admission or a rerun of the poller must find what an
                # earlier attempt created instead of creating it again.
                deadline.check("looking for an FN task made earlier")
                existing = self.find_existing(marker, deadline)
                if existing is not None:
                    return Submission(Outcome.SUBMITTED, f"found FN task {existing}",
                                      existing, adopted=True)

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
            task_id = self.fn.create(token, spec.project, body, timeout=deadline.remaining())
            return Submission(Outcome.SUBMITTED, f"created FN task {task_id}", task_id)
        except UnknownUser as error:
            return Submission(Outcome.REFUSED, f"{error}; the Task must name a researcher "
                              "known to the Federated Node")
        except FNAuthFailed as error:
            return Submission(Outcome.REFUSED, f"the FN would not accept {who}'s identity "
                              f"({error}); check that the user may use project "
                              f"{spec.project!r}")
        except FNRejected as error:
            return Submission(Outcome.REFUSED, f"the Federated Node refused the task: {error}")
        except ServiceError as error:
            if error.transient:
                return Submission(Outcome.DEFERRED, str(error))
            return Submission(Outcome.REFUSED, str(error))
