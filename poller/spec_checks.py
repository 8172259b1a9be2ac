"""Which spec checks a Task must still pass, by how far it got.

A Task not yet submitted must pass every check of today's settings before
the poller asks the FN to create its FN task. A submitted Task was admitted
under the checks of its day: a check added or tightened since (an image
registry allow-list set later, a stricter field rule) must never fail it
while its FN task runs. To follow it the poller needs only who the
researcher is and where the results go, so that is what it reads when the
full checks refuse the spec.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from taskcore.spec_fields import (Image, branch_field, dataset_field, parse_image,
                                  project_field, repository_field, user_field)
from taskcore.task import TaskSpec, review_spec


@dataclass(frozen=True)
class SpecReading:
    """The spec the poller works with (None when it has none), and what today's checks
    say is wrong with the Task as written."""

    spec: TaskSpec | None
    problems: list[str] = field(default_factory=list)


def read_spec(name: str, raw: Any, *, submitted: bool,
              allowed_registries: tuple[str, ...]) -> SpecReading:
    if not submitted:
        review = review_spec(name, raw, allowed_registries=allowed_registries)
        return SpecReading(review.spec, review.problems)
    review = review_spec(name, raw)
    if review.spec is not None:
        return SpecReading(review.spec)
    return SpecReading(followable_spec(raw), review.problems)


def followable_spec(raw: Any) -> TaskSpec | None:
    """What a submitted Task's spec still tells, read leniently: None unless it names a
    researcher, a repository and a branch. The image is kept as written; nothing
    submits it again."""
    if not isinstance(raw, dict):
        return None
    ignored: list[str] = []
    username, email, github_id = user_field(raw, ignored)
    repository = repository_field(raw, ignored)
    branch = branch_field(raw, ignored)
    if not (username or email or github_id) or not repository or not branch:
        return None
    dataset_id, dataset_name = dataset_field(raw.get("dataset"), ignored)
    written = raw.get("image") if isinstance(raw.get("image"), str) else ""
    image = parse_image(written, ignored, ignored) or Image(written, "", "", None, None)
    return TaskSpec(image=image, project=project_field(raw, ignored), repository=repository,
                    branch=branch, username=username, email=email, github_id=github_id,
                    dataset_id=dataset_id, dataset_name=dataset_name)
