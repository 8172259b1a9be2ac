"""FNTC installed on a local control plane, against the stand-ins: what the
demo runs and what the integration tests stand on."""
