"""What the webhook and the poller share: the Task, its phases, settings, and
the clients of the systems around a Federated Node (the FN itself, Keycloak,
GitHub and the Kubernetes API)."""
