"""Delivering a succeeded Task's results to its GitHub repository.

The results go on a branch of their own per FN task
(``<prefix><namespace>/<name>-fn<id>``, so a Task made again under the same
name never stacks its results on the earlier run's), into the folder
``results/<name>/``, which the commit leaves holding this run's files alone.
The commit message carries the Task's marker, so a rerun after a crash finds
the commit instead of making a second one. Result review on the FN, expiry,
an archive that can never be delivered and GitHub trouble each leave a state
a person can read.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from taskcore.errors import RateLimited, ServiceError
from taskcore.fn import FNClient, FNRejected, ResultsNotReleased
from taskcore.github import MAX_RETRY_AFTER, GitHubApp
from taskcore.phases import Phase, now_rfc3339
from taskcore.results import ResultsArchiveError, read_results_archive
from taskcore.status import RESULTS_DELIVERED, set_condition
from taskcore.task import Marker, TaskSpec

if TYPE_CHECKING:
    from .reconcile import Step

log = logging.getLogger(__name__)

#: Result states after which nothing more will happen.
SETTLED = ("Delivered", "Blocked", "Expired", "Undeliverable", "NotApplicable")


def results_settled(phase: Phase, status: dict[str, Any]) -> bool:
    if phase is not Phase.SUCCEEDED:
        return phase.final
    return (status.get("results") or {}).get("state") in SETTLED


class Deliverer:
    def __init__(self, *, fn: FNClient, github: GitHubApp, branch_prefix: str,
                 retry_base: float, retry_cap: float, results_timeout: float, now) -> None:
        self.fn = fn
        self.github = github
        self.branch_prefix = branch_prefix
        self.retry_base = retry_base
        self.retry_cap = retry_cap
        self.results_timeout = results_timeout
        self.now = now

    def branch_for(self, marker: Marker, task_id: int) -> str:
        return f"{self.branch_prefix}{marker.namespace}/{marker.name}-fn{task_id}"

    def due(self, step: "Step") -> bool:
        """False while an earlier failed attempt's backoff lasts."""
        due = (step.status.get("results") or {}).get("nextAttemptAt")
        return not (due and due > now_rfc3339(self.now()))

    def postpone(self, step: "Step", task: dict[str, Any], marker: Marker, reason: str) -> None:
        """Count a delivery attempt that could not even start, and say why."""
        fields = {"namespace": marker.namespace, "task": marker.name}
        self._retry(step, dict(step.status.get("results") or {}), reason, fields,
                    generation=task["metadata"].get("generation"))

    def refuse(self, step: "Step", task: dict[str, Any], message: str) -> None:
        """Settle results that must never be delivered, saying why."""
        self._settle(step, dict(step.status.get("results") or {}), "Undeliverable", message,
                     task["metadata"].get("generation"), warning=True)

    def deliver(self, step: "Step", task: dict[str, Any], spec: TaskSpec, marker: Marker, *,
                token: str, task_id: int) -> None:
        """Fetch the results and commit them once; the outcome lands in ``step``."""
        status = step.status
        results = dict(status.get("results") or {})
        generation = task["metadata"].get("generation")
        fields = {"namespace": marker.namespace, "task": marker.name, "fn_task_id": task_id}
        try:
            archive = self.fn.results(token, task_id, timeout=self.results_timeout)
            files = read_results_archive(archive)
            # A folder of their own, so results never overwrite the study's files.
            folder = f"results/{marker.name}/"
            delivery = self.github.deliver(
                repository=spec.repository, branch=self.branch_for(marker, task_id),
                base_branch=spec.branch, marker=str(marker), replace_folder=folder,
                files={folder + path: content for path, content in files.items()},
                message=(f"Results of Task {marker.namespace}/{marker.name} "
                         f"(FN task {task_id})\n\n{marker}"))
        except ResultsNotReleased as error:
            state = "Blocked" if error.blocked else "PendingReview"
            message = ("The FN's reviewers blocked the release of the results."
                       if error.blocked else
                       "The results wait for review on the FN before they can be delivered.")
            self._settle(step, results, state, message, generation, warning=error.blocked)
            return
        except FNRejected as error:
            if "not available anymore" in str(error):
                self._settle(step, results, "Expired", "The FN no longer keeps these results; "
                             "run the Task again to get them.", generation, warning=True)
                return
            self._retry(step, results, f"the FN refused to hand over the results: {error}",
                        fields, generation=generation)
            return
        except ResultsArchiveError as error:
            # The FN keeps handing over the same archive: trying again cannot help.
            log.warning("results cannot be delivered: %s", error, extra=fields)
            self._settle(step, results, "Undeliverable",
                         f"The results cannot be delivered: {error}.", generation,
                         warning=True)
            return
        except ServiceError as error:
            self._retry(step, results, str(error), fields, generation=generation,
                        retry_after=error.retry_after if isinstance(error, RateLimited)
                        else None)
            return

        message = (f"{len(files)} result file(s) committed to branch {delivery.branch} "
                   f"of {delivery.repository} ({delivery.commit_sha[:12]}).")
        if delivery.fell_back_to:
            message += (f" Branch {spec.branch!r} does not exist there, so the results "
                        f"branch starts from {delivery.fell_back_to!r}.")
        status["results"] = {"state": "Delivered", "branch": delivery.branch,
                             "commit": delivery.commit_sha, "repository": delivery.repository,
                             "deliveredAt": now_rfc3339(self.now()), "files": len(files)}
        status["conditions"] = set_condition(status.get("conditions") or [], RESULTS_DELIVERED,
                                             True, reason="Delivered", message=message,
                                             generation=generation,
                                             now=now_rfc3339(self.now()))
        step.delivered = True
        step.event("ResultsDelivered", message)
        log.info("results delivered", extra={**fields, "files": len(files),
                                              "branch": delivery.branch})

    def _settle(self, step: "Step", results: dict[str, Any], state: str, message: str,
                generation: int | None, *, warning: bool = False) -> None:
        if results.get("state") == state:
            return
        step.status["results"] = {"state": state, "message": message}
        step.status["conditions"] = set_condition(
            step.status.get("conditions") or [], RESULTS_DELIVERED, False,
            reason=state, message=message, generation=generation, now=now_rfc3339(self.now()))
        step.event(f"Results{state}", message, warning)

    def _retry(self, step: "Step", results: dict[str, Any], reason: str,
               fields: dict[str, Any], *, generation: int | None,
               retry_after: float | None = None) -> None:
        attempts = int(results.get("attempts") or 0) + 1
        delay = (min(retry_after, MAX_RETRY_AFTER) if retry_after else
                 min(self.retry_cap, self.retry_base * 2 ** min(attempts - 1, 32)))
        now = self.now()
        next_at = now_rfc3339(now + timedelta(seconds=delay))
        log.warning("results not delivered (attempt %d, next after %s): %s", attempts,
                    next_at, reason, extra=fields)
        first = results.get("state") != "Retrying"
        message = (f"Results not delivered yet (attempt {attempts}, next after {next_at}): "
                   f"{reason}")[:500]
        step.status["results"] = {"state": "Retrying", "attempts": attempts,
                                  "nextAttemptAt": next_at, "message": message}
        step.status["conditions"] = set_condition(
            step.status.get("conditions") or [], RESULTS_DELIVERED, False, reason="Retrying",
            message=message, generation=generation, now=now_rfc3339(now))
        if first:
            step.event("ResultsDeliveryFailed", message, True)
