"""Local stand-ins for the Federated Node, Keycloak and GitHub.

They speak real HTTP on loopback and follow the behaviour the real systems
show to a client, quirks included, so the product, its tests and the demo
run against something honest when the real systems are out of reach.
"""
