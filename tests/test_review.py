"""AdmissionReview parsing, the answer helpers and the annotation JSON patch."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest

from webhook.review import (API_VERSION, AdmissionRequest, MalformedReview, allowed,
                            annotation_patch, denied, errored, patched, pointer,
                            review_response)


def review(**request: Any) -> dict[str, Any]:
    body = {"uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "operation": "CREATE",
            "namespace": "research", "name": "summary",
            "userInfo": {"username": "system:serviceaccount:argocd:argocd-application-"
                                     "controller", "groups": ["system:serviceaccounts"]},
            "object": {"metadata": {"name": "summary"}}}
    body.update(request)
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "request": body}


def unescape(token: str) -> str:
    """RFC 6901: ``~1`` first, then ``~0``."""
    return token.replace("~1", "/").replace("~0", "~")


def apply_patch(document: dict[str, Any], operations: list[dict[str, Any]]) -> dict[str, Any]:
    """A small RFC 6902 applier (add and remove on objects), strict like the API server:
    the parent of every path must exist."""
    result = copy.deepcopy(document)
    for operation in operations:
        tokens = [unescape(token) for token in operation["path"].split("/")[1:]]
        parent = result
        for token in tokens[:-1]:
            parent = parent[token]      # KeyError: the parent does not exist
        if operation["op"] == "add":
            parent[tokens[-1]] = operation["value"]
        elif operation["op"] == "remove":
            del parent[tokens[-1]]
        else:
            raise AssertionError(f"unexpected op {operation['op']}")
    return result


# -- parsing -----------------------------------------------------------------------------


def test_parse_reads_kubernetes_field_names() -> None:
    request = AdmissionRequest.parse(review(
        dryRun=True, subResource="status", oldObject={"spec": {}},
        kind={"group": "tasks.federatednode.com", "version": "v1", "kind": "Task"}))
    assert request.uid == "705ab4f5-6393-11e8-b7cc-42010a800002"
    assert (request.operation, request.namespace, request.name) == \
        ("CREATE", "research", "summary")
    assert request.user_info.username.startswith("system:serviceaccount:argocd:")
    assert request.user_info.groups == ("system:serviceaccounts",)
    assert request.dry_run is True and request.sub_resource == "status"
    assert request.old_object == {"spec": {}} and request.kind["kind"] == "Task"


def test_a_uid_of_128_characters_is_still_read() -> None:
    assert AdmissionRequest.parse(review(uid="u" * 128)).uid == "u" * 128


def test_parse_tolerates_absent_optional_fields() -> None:
    request = AdmissionRequest.parse({"apiVersion": API_VERSION, "kind": "AdmissionReview",
                                      "request": {"uid": "u1"}})
    assert request.uid == "u1" and request.operation == "" and request.name == ""
    assert request.user_info.username == "" and request.user_info.groups == ()
    assert request.object is None and request.old_object is None and not request.dry_run


@pytest.mark.parametrize("body", [
    [], "text", None,
    {"kind": "AdmissionReview", "request": {"uid": "u"}},
    {"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview",
     "request": {"uid": "u"}},
    {"apiVersion": API_VERSION, "kind": "ConversionReview", "request": {"uid": "u"}},
    {"apiVersion": API_VERSION, "kind": "AdmissionReview"},
    {"apiVersion": API_VERSION, "kind": "AdmissionReview", "request": {"operation": "CREATE"}},
    {"apiVersion": API_VERSION, "kind": "AdmissionReview", "request": {"uid": 42}},
    {"apiVersion": API_VERSION, "kind": "AdmissionReview", "request": {"uid": "u" * 129}},
    {"apiVersion": API_VERSION, "kind": "AdmissionReview",
     "request": {"uid": "u", "userInfo": {"username": "alice", "groups": 5}}},
    {"apiVersion": API_VERSION, "kind": "AdmissionReview",
     "request": {"uid": "u", "userInfo": {"username": "alice", "groups": ["a", ["b"]]}}},
    {"apiVersion": API_VERSION, "kind": "AdmissionReview",
     "request": {"uid": "u", "userInfo": {"username": "alice", "groups": "admins"}}},
], ids=["list", "string", "null", "no-api-version", "v1beta1", "other-kind", "no-request",
        "no-uid", "uid-not-string", "uid-too-long", "groups-number", "groups-nested",
        "groups-string"])
def test_parse_refuses_what_is_not_an_admission_review(body: Any) -> None:
    with pytest.raises(MalformedReview):
        AdmissionRequest.parse(body)


# -- answers -----------------------------------------------------------------------------


def test_every_answer_echoes_the_uid_and_the_review_type() -> None:
    for answer in (allowed(), denied("no"), patched([{"op": "add", "path": "/a", "value": 1}],
                                                    "submitted"), errored("crash")):
        body = review_response("uid-7", answer)
        assert body["apiVersion"] == API_VERSION and body["kind"] == "AdmissionReview"
        assert body["response"]["uid"] == "uid-7"


def test_allowed_answer_is_minimal() -> None:
    assert review_response("u", allowed(warnings=["careful"]))["response"] == {
        "uid": "u", "allowed": True, "warnings": ["careful"]}


def test_denied_answer_carries_the_sentence_kubectl_prints() -> None:
    response = review_response("u", denied("Task refused: spec.image is required"))["response"]
    assert response == {"uid": "u", "allowed": False,
                        "status": {"code": 403, "reason": "Forbidden",
                                   "message": "Task refused: spec.image is required"}}


def test_errored_answer_is_a_500_in_the_review() -> None:
    response = review_response("u", errored("FNTC failed"))["response"]
    assert response["allowed"] is False
    assert response["status"] == {"code": 500, "reason": "InternalError",
                                  "message": "FNTC failed"}


def test_patch_is_base64_json_patch() -> None:
    operations = [{"op": "add", "path": "/metadata/annotations", "value": {"a": "b"}}]
    response = review_response("u", patched(operations, "submitted"))["response"]
    assert response["patchType"] == "JSONPatch"
    assert json.loads(base64.b64decode(response["patch"])) == operations


def test_warnings_are_capped_in_count_and_length() -> None:
    response = review_response("u", allowed(warnings=["w" * 400] * 12))["response"]
    assert len(response["warnings"]) == 10
    assert all(len(warning) == 256 for warning in response["warnings"])


# -- JSON pointers and the annotation patch ----------------------------------------------


@pytest.mark.parametrize("parts, expected", [
    (("metadata", "annotations"), "/metadata/annotations"),
    (("metadata", "annotations", "tasks.federatednode.com/task-id"),
     "/metadata/annotations/tasks.federatednode.com~1task-id"),
    (("a~b",), "/a~0b"),
    (("~1",), "/~01"),
    (("a/b~c/d",), "/a~1b~0c~1d"),
    (("",), "/"),
], ids=["plain", "slash", "tilde", "tilde-then-one", "mixed", "empty-key"])
def test_pointer_escapes_per_rfc_6901(parts: tuple[str, ...], expected: str) -> None:
    path = pointer(*parts)
    assert path == expected
    assert [unescape(token) for token in path.split("/")[1:]] == list(parts)


def test_patch_creates_the_annotations_map_when_absent() -> None:
    obj = {"metadata": {"name": "summary"}}
    operations = annotation_patch(obj, {"tasks.federatednode.com/task-id": "12",
                                        "tasks.federatednode.com/admission-uid": "u",
                                        "tasks.federatednode.com/other": None})
    assert operations == [{"op": "add", "path": "/metadata/annotations",
                           "value": {"tasks.federatednode.com/task-id": "12",
                                     "tasks.federatednode.com/admission-uid": "u"}}]
    assert apply_patch(obj, operations)["metadata"]["annotations"] == {
        "tasks.federatednode.com/task-id": "12", "tasks.federatednode.com/admission-uid": "u"}


def test_patch_with_only_removals_on_an_absent_map_is_empty() -> None:
    assert annotation_patch({"metadata": {}}, {"x/y": None}) == []
    assert annotation_patch({}, {"x/y": None}) == []


def test_patch_adds_into_an_existing_map_and_overwrites_or_removes_keys() -> None:
    obj = {"metadata": {"annotations": {"team": "oncology",
                                        "tasks.federatednode.com/task-id": "999",
                                        "odd~key/x": "old"}}}
    operations = annotation_patch(obj, {"tasks.federatednode.com/task-id": "12",
                                        "odd~key/x": None,
                                        "tasks.federatednode.com/submission": "submitted",
                                        "absent/key": None})
    assert operations == [
        {"op": "add", "path": "/metadata/annotations/tasks.federatednode.com~1task-id",
         "value": "12"},
        {"op": "remove", "path": "/metadata/annotations/odd~0key~1x"},
        {"op": "add", "path": "/metadata/annotations/tasks.federatednode.com~1submission",
         "value": "submitted"},
    ]
    assert apply_patch(obj, operations)["metadata"]["annotations"] == {
        "team": "oncology", "tasks.federatednode.com/task-id": "12",
        "tasks.federatednode.com/submission": "submitted"}


def test_patch_replaces_an_annotations_value_that_is_not_a_map() -> None:
    operations = annotation_patch({"metadata": {"annotations": None}}, {"a/b": "1"})
    assert operations == [{"op": "add", "path": "/metadata/annotations",
                           "value": {"a/b": "1"}}]
