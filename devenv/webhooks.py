"""The admission webhook configurations, for a URL (local) or a Service (cluster)."""

from __future__ import annotations

from typing import Any

from taskcore.task import GROUP, PLURAL, VERSION

#: Seconds the API server waits for the webhook; FNTC_ADMISSION_BUDGET stays below it.
TIMEOUT_SECONDS = 15


def _rules(operations: list[str]) -> list[dict[str, Any]]:
    return [{"apiGroups": [GROUP], "apiVersions": [VERSION], "operations": operations,
             "resources": [PLURAL], "scope": "Namespaced"}]


def configurations(client_config: dict[str, Any], *, name: str = "fntc"
                   ) -> list[dict[str, Any]]:
    """A mutating webhook for CREATE (check, submit, record the FN task id) and a
    validating one for UPDATE and DELETE (immutable spec, cancel on delete)."""
    common = {
        "admissionReviewVersions": ["v1"],
        "sideEffects": "NoneOnDryRun",
        "timeoutSeconds": TIMEOUT_SECONDS,
        "failurePolicy": "Fail",
        "matchPolicy": "Equivalent",
    }

    def client(path: str) -> dict[str, Any]:
        config = {key: (dict(value) if isinstance(value, dict) else value)
                  for key, value in client_config.items()}
        if "url" in config:
            config["url"] = config["url"].rstrip("/") + path
        else:
            config["service"] = {**config["service"], "path": path}
        return config

    return [
        {"apiVersion": "admissionregistration.k8s.io/v1",
         "kind": "MutatingWebhookConfiguration", "metadata": {"name": name},
         "webhooks": [{"name": f"submit.{GROUP}", "clientConfig": client("/mutate"),
                       "rules": _rules(["CREATE"]), "reinvocationPolicy": "Never",
                       **common}]},
        {"apiVersion": "admissionregistration.k8s.io/v1",
         "kind": "ValidatingWebhookConfiguration", "metadata": {"name": name},
         "webhooks": [{"name": f"guard.{GROUP}", "clientConfig": client("/validate"),
                       "rules": _rules(["UPDATE", "DELETE"]), **common}]},
    ]
