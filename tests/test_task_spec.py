"""The pure checks on a Task: names, images, branches, the whole spec, the marker."""

from __future__ import annotations

from typing import Any

import pytest

from taskcore.spec_fields import (MAX_NAME_LENGTH, check_branch, check_name, parse_image,
                                  shown)
from taskcore.fn import task_body
from taskcore.task import Marker, review_spec

DIGEST = "sha256:" + "ab" * 32


def valid_spec(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "image": f"ghcr.io/fntc-sandbox/analytics@{DIGEST}",
        "user": {"email": "alice@example.org"},
        "project": "project1",
        "dataset": 1,
        "repository": "fntc-sandbox/cancer-study",
    }
    spec.update(overrides)
    return spec


def problems_of(spec: Any, name: str = "summary", **kwargs: Any) -> list[str]:
    return review_spec(name, spec, **kwargs).problems


# -- names -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "summary", "cohort-2024", "x" * MAX_NAME_LENGTH],
                         ids=["one-letter", "word", "with-digits", "longest"])
def test_usable_names(name: str) -> None:
    assert check_name(name) is None


@pytest.mark.parametrize("name, fragment", [
    ("", "generateName is not supported"),
    ("x" * (MAX_NAME_LENGTH + 1), f"is {MAX_NAME_LENGTH + 1} characters long"),
    ("my.task", "no dots"),
    ("Summary", "lowercase letters"),
    ("-summary", "lowercase letters"),
    ("summary-", "lowercase letters"),
    ("sum_mary", "lowercase letters"),
], ids=["empty", "too-long", "dot", "uppercase", "leading-dash", "trailing-dash", "underscore"])
def test_unusable_names(name: str, fragment: str) -> None:
    problem = check_name(name)
    assert problem is not None and fragment in problem


# -- images ------------------------------------------------------------------------------


@pytest.mark.parametrize("reference, tag, digest", [
    ("ghcr.io/org/image:1.0", "1.0", None),
    (f"ghcr.io/org/image@{DIGEST}", None, DIGEST),
    ("docker.io/library/ubuntu:22.04", "22.04", None),
    ("localhost/tool:dev", "dev", None),
    ("registry.example.org/a/b/c__d:V1_rc-2", "V1_rc-2", None),
], ids=["tag", "digest", "docker-hub-library", "localhost", "nested-path"])
def test_image_references_the_fn_accepts(reference: str, tag: str | None,
                                         digest: str | None) -> None:
    problems: list[str] = []
    image = parse_image(reference, problems, [])
    assert problems == []
    assert image is not None and (image.tag, image.digest) == (tag, digest)
    assert image.reference == reference


@pytest.mark.parametrize("reference, fragment", [
    ("analytics:1.0", "has no registry"),
    ("fntc-sandbox/analytics:1.0", "does not start with a registry host"),
    ("ghcr.io:443/org/image:1.0", "names a registry with a port (ghcr.io:443)"),
    ("ghcr.io/org/image", "neither a tag nor a digest"),
    (f"ghcr.io/org/image:1.0@{DIGEST}", "both a tag and a digest"),
    ("ghcr.io/org/image@sha256:abc", "not a valid image reference"),
    ("ghcr.io/Org/Image:1.0", "not a valid image reference"),
    ("GHCR.IO/org/image:1.0", "not a valid image reference"),
    ("ghcr.io/org/image:-bad", "not a valid image reference"),
    ("ghcr.io//image:1.0", "not a valid image reference"),
], ids=["no-registry", "no-registry-host", "port", "no-tag", "tag-and-digest",
        "short-digest", "uppercase-path", "uppercase-registry", "bad-tag", "empty-path-part"])
def test_image_references_refused(reference: str, fragment: str) -> None:
    problems: list[str] = []
    assert parse_image(reference, problems, []) is None
    assert len(problems) == 1 and fragment in problems[0], problems


@pytest.mark.parametrize("reference, warning", [
    ("ghcr.io/org/image:latest", "image tag 'latest' moves with every push; pin a digest "
                                 "(@sha256:...) to run exactly this one"),
    ("ghcr.io/org/image:1.0", "image tag '1.0' can be moved to another build; pin a digest "
                              "(@sha256:...) to run exactly this one"),
], ids=["latest", "mutable-tag"])
def test_tags_are_allowed_with_a_short_warning_naming_the_tag(reference: str,
                                                              warning: str) -> None:
    warnings: list[str] = []
    assert parse_image(reference, [], warnings) is not None
    assert warnings == [warning]


def test_a_digest_needs_no_warning() -> None:
    warnings: list[str] = []
    assert parse_image(f"ghcr.io/org/image@{DIGEST}", [], warnings) is not None
    assert warnings == []


def test_registry_allow_list() -> None:
    assert problems_of(valid_spec(), allowed_registries=("ghcr.io",)) == []
    assert problems_of(valid_spec(), allowed_registries=("docker.io", "quay.io")) == [
        "image registry 'ghcr.io' is not allowed here; use one of: docker.io, quay.io"]


# -- branches ----------------------------------------------------------------------------


@pytest.mark.parametrize("branch", ["main", "feature/results-v2", "release-1.0", "a@b"],
                         ids=["main", "nested", "dotted", "at-inside"])
def test_valid_branches(branch: str) -> None:
    assert check_branch(branch) is None


@pytest.mark.parametrize("branch", [
    "", "x" * 256, "has space", "tab\there", "a~b", "a^b", "a:b", "a?b", "a*b", "a[b",
    "a\\b", "/lead", "-lead", "trail/", "trail.", "a//b", "a..b", "a@{b", "@", "HEAD",
    ".hidden", "dir/.hidden", "x.lock", "dir/x.lock/y",
], ids=lambda value: repr(value)[:24])
def test_invalid_branches(branch: str) -> None:
    assert check_branch(branch) is not None


# -- the whole spec ----------------------------------------------------------------------


def test_a_valid_spec_becomes_a_task_spec() -> None:
    review = review_spec("summary", valid_spec(
        user={"email": " alice@example.org ", "username": "alice@example.org"},
        command=["python", "run.py"], env={"MODE": "full"}, dataset="7",
        branch="feature/x"))
    assert review.ok and review.problems == [] and review.warnings == []
    spec = review.spec
    assert spec is not None
    assert spec.email == "alice@example.org" and spec.username == "alice@example.org"
    assert spec.dataset_id == 7 and spec.dataset_name is None
    assert spec.command == ("python", "run.py") and spec.env == {"MODE": "full"}
    assert (spec.repository, spec.branch) == ("fntc-sandbox/cancer-study", "feature/x")


def test_defaults_and_alternative_forms() -> None:
    spec = review_spec("summary", valid_spec(
        dataset=" cancer-registry ", repository="cancer-study",
        organization="fntc-sandbox", user={"githubId": 5551234})).spec
    assert spec is not None
    assert spec.branch == "main"
    assert (spec.dataset_id, spec.dataset_name) == (None, "cancer-registry")
    assert spec.repository == "fntc-sandbox/cancer-study"
    assert (spec.email, spec.username, spec.github_id) == ("", "", "5551234")
    assert spec.requester == "GitHub user 5551234"


@pytest.mark.parametrize("overrides, expected", [
    ({"image": None}, "spec.image is required"),
    ({"image": "  "}, "spec.image is required"),
    ({"image": 123}, "spec.image must be a string, not a number 123"),
    ({"image": "ghcr.io/o/i:" + "a" * 600}, "spec.image is 612 characters long; "
                                          "at most 512 are allowed"),
    ({"user": {}}, "spec.user needs an email or a username, to act for that researcher"),
    ({"user": "alice"}, "spec.user must be an object with an email or a username"),
    ({"user": {"email": "alice-at-example.org"}},
     "spec.user.email 'alice-at-example.org' is not a valid email address"),
    ({"user": {"email": ["alice@example.org"]}},
     "spec.user.email must be a string, not a list ['alice@example.org']"),
    ({"user": {"githubId": "carol-gh"}},
     "spec.user.githubId 'carol-gh' must be the numeric GitHub user id"),
    ({"user": {"githubId": True}}, "spec.user.githubId True must be the numeric GitHub user id"),
    ({"user": {"githubId": -4}}, "spec.user.githubId -4 must be the numeric GitHub user id"),
    ({"project": ""}, "spec.project is required: the FN project whose dataset access "
                      "this Task uses"),
    ({"project": "projét"}, "spec.project 'projét' may only hold printable ASCII characters"),
    ({"project": "p\nX-Other: 1"}, "spec.project 'p\\nX-Other: 1' may only hold printable "
                                   "ASCII characters"),
    ({"dataset": 0}, "spec.dataset 0 must be a positive dataset id"),
    ({"dataset": "-3"}, "spec.dataset '-3' must be a positive dataset id"),
    ({"dataset": None}, "spec.dataset is required: a dataset id (a number) or a dataset name"),
    ({"dataset": " "}, "spec.dataset is required: a dataset id (a number) or a dataset name"),
    ({"dataset": 1.5}, "spec.dataset 1.5 must be a dataset id (a number) or a dataset name"),
    ({"dataset": True}, "spec.dataset True must be a dataset id (a number) or a dataset name"),
    ({"repository": "cancer-study"}, "spec.repository 'cancer-study' needs its owner: write "
                                     "owner/name, or set spec.organization"),
    ({"repository": "-bad/study"}, "spec.repository owner '-bad' is not a valid GitHub "
                                   "account name"),
    ({"repository": "org/study.git"}, "spec.repository name 'study.git' is not a valid GitHub "
                                      "repository name (letters, digits, '.', '-', '_'; "
                                      "no .git suffix)"),
    ({"organization": "other"}, "spec.organization 'other' does not match the owner in "
                                "spec.repository 'fntc-sandbox/cancer-study'"),
    ({"branch": "a..b"}, "spec.branch 'a..b' is not a valid git branch name: it must not "
                         "contain .. or @{, nor be @ or HEAD"),
    ({"command": "python run.py"}, "spec.command must be a list of strings"),
    ({"command": ["x"] * 65}, "spec.command has 65 items; at most 64 are allowed"),
    ({"env": ["A=1"]}, "spec.env must be a map of names to values"),
    ({"env": {"1BAD": "x"}}, "spec.env name '1BAD' is not a valid environment variable name"),
    ({"env": {"RUNS": 3}}, 'spec.env value of RUNS must be a string; quote it, as in '
                           'RUNS: "3"'),
], ids=["image-null", "image-blank", "image-number", "image-too-long", "user-empty",
        "user-not-object", "email-malformed", "email-not-string", "github-id-not-numeric",
        "github-id-boolean", "github-id-negative", "project-empty", "project-non-ascii",
        "project-header-injection", "dataset-zero", "dataset-negative-text", "dataset-null",
        "dataset-blank", "dataset-float", "dataset-boolean", "repository-no-owner",
        "repository-bad-owner", "repository-git-suffix", "organization-mismatch",
        "branch-dots", "command-string", "command-too-long", "env-list", "env-bad-name",
        "env-number"])
def test_each_problem_is_reported_exactly(overrides: dict[str, Any], expected: str) -> None:
    review = review_spec("summary", valid_spec(**overrides))
    assert review.problems == [expected]
    assert review.spec is None


def test_every_problem_is_reported_at_once() -> None:
    review = review_spec("Bad.Name", {
        "image": "analytics", "user": {"email": "x"}, "project": "", "dataset": 0,
        "repository": "study", "branch": "a b", "command": [1], "env": {"A": 1},
    })
    assert [problem.split(" ")[0:2] for problem in review.problems] == [
        ["the", "Task"], ["image", "'analytics'"], ["spec.user.email", "'x'"],
        ["spec.project", "is"], ["spec.dataset", "0"], ["spec.repository", "'study'"],
        ["spec.branch", "'a"], ["spec.command", "must"], ["spec.env", "value"],
    ]
    assert review.spec is None


def test_a_spec_that_is_not_an_object() -> None:
    assert problems_of(None) == ["spec is missing or is not an object"]
    assert problems_of(["image"]) == ["spec is missing or is not an object"]


def test_user_values_are_cut_short_in_messages() -> None:
    assert shown("x" * 10) == "'xxxxxxxxxx'"
    long = shown("y" * 500)
    assert len(long) == 80 and long.endswith("…")
    problems = problems_of(valid_spec(user={"email": "z" * 200}))
    assert len(problems) == 1 and len(problems[0]) < 140


def test_warnings_do_not_refuse() -> None:
    review = review_spec("summary", valid_spec(image="ghcr.io/org/image:latest"))
    assert review.ok and review.spec is not None
    assert review.warnings == ["image tag 'latest' moves with every push; pin a digest "
                               "(@sha256:...) to run exactly this one"]


# -- marker ------------------------------------------------------------------------------


def test_marker_round_trip() -> None:
    marker = Marker("local", "research", "summary", "0b6e-uid")
    assert str(marker) == "fntc:v1 cluster=local namespace=research task=summary uid=0b6e-uid"
    assert Marker.parse(str(marker)) == marker


@pytest.mark.parametrize("text", [None, 12, "", "a study of cancer",
                                  "fntc:v1 cluster=local namespace=research task=summary",
                                  "fntc:v2 cluster=a namespace=b task=c uid=d"],
                         ids=["none", "number", "empty", "free-text", "no-uid",
                              "other-version"])
def test_marker_parse_ignores_other_descriptions(text: Any) -> None:
    assert Marker.parse(text) is None


# -- sizes -------------------------------------------------------------------------------


@pytest.mark.parametrize("overrides, expected", [
    ({"command": ["python", "x" * 4097]},
     "spec.command[1] is 4097 characters long; at most 4096 are allowed"),
    ({"env": {"QUERY": "y" * 4097}},
     "spec.env value of QUERY is 4097 characters long; at most 4096 are allowed"),
    ({"dataset": "d" * 256}, "spec.dataset is 256 characters long; at most 255 are allowed"),
    ({"dataset": 2**63}, f"spec.dataset {2**63} must be a positive dataset id"),
    ({"env": {f"PART_{index}": "z" * 4000 for index in range(9)}},
     "spec is 36341 bytes long; at most 32768 are allowed: pass large inputs through the "
     "dataset, not the command or env"),
], ids=["command-item", "env-value", "dataset-name", "dataset-id-over-int64", "whole-spec"])
def test_sizes_the_api_server_or_etcd_would_refuse(overrides: dict[str, Any],
                                                    expected: str) -> None:
    assert problems_of(valid_spec(**overrides)) == [expected]


def test_values_at_the_size_limits_pass() -> None:
    review = review_spec("summary", valid_spec(
        command=["a" * 4096], env={"A": "b" * 4096}, dataset="d" * 255))
    assert review.problems == []
    assert review.spec is not None and review.spec.command == ("a" * 4096,)


# -- resources ---------------------------------------------------------------------------


def test_resources_become_quantities_as_text() -> None:
    review = review_spec("summary", valid_spec(resources={
        "limits": {"cpu": 2, "memory": "1Gi"}, "requests": {"cpu": "500m", "memory": " 512Mi "}}))
    assert review.problems == []
    assert review.spec is not None and review.spec.resources == {
        "limits": {"cpu": "2", "memory": "1Gi"}, "requests": {"cpu": "500m", "memory": "512Mi"}}
    body = task_body(review.spec, name="summary", marker=Marker("c", "n", "summary", "u"))
    assert body["resources"] == review.spec.resources
    assert all(isinstance(value, str) for section in body["resources"].values()
               for value in section.values())


def test_no_resources_sends_none() -> None:
    spec = review_spec("summary", valid_spec()).spec
    assert spec is not None and spec.resources == {}
    assert "resources" not in task_body(spec, name="summary",
                                        marker=Marker("c", "n", "summary", "u"))


@pytest.mark.parametrize("resources, expected", [
    ("lots", "spec.resources must be an object with limits and/or requests"),
    ({"limits": {"memory": "1GB"}},
     "spec.resources.limits.memory '1GB' is not a Kubernetes quantity such as 500m, 2 or 1Gi"),
    ({"requests": {"cpu": "-1"}},
     "spec.resources.requests.cpu '-1' is not a Kubernetes quantity such as 500m, 2 or 1Gi"),
    ({"requests": {"cpu": "1e3"}},
     "spec.resources.requests.cpu '1e3' is not a Kubernetes quantity such as 500m, 2 or 1Gi"),
    ({"limits": {"cpu": 0.5}},
     'spec.resources.limits.cpu must be a quantity such as "500m" or "1Gi", not a number 0.5'),
    ({"limits": {"memory": "512Mi"}, "requests": {"memory": "1Gi"}},
     "spec.resources.limits.memory 512Mi is below its request 1Gi; a limit must be at least "
     "the request"),
    ({"limits": {"cpu": "500m"}, "requests": {"cpu": 1}},
     "spec.resources.limits.cpu 500m is below its request 1; a limit must be at least the "
     "request"),
    ({"limits": {"gpu": "1"}}, "spec.resources.limits may only name cpu and memory, not 'gpu'"),
    ({"claims": []}, "spec.resources may only hold limits and requests, not 'claims'"),
    ({"limits": ["cpu"]}, "spec.resources.limits must be a map of cpu and memory"),
], ids=["not-object", "memory-unit", "negative", "exponent", "float", "memory-limit-below",
        "cpu-limit-below", "gpu", "claims", "limits-list"])
def test_resources_refused(resources: Any, expected: str) -> None:
    assert problems_of(valid_spec(resources=resources)) == [expected]


def test_a_limit_equal_to_its_request_passes() -> None:
    assert problems_of(valid_spec(resources={"limits": {"memory": "1024Mi"},
                                             "requests": {"memory": "1Gi"}})) == []
