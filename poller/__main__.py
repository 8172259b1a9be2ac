"""``python -m poller``: one run, as the CronJob starts it.

Exit codes: 0 when the run completed (even if some Tasks had trouble, which
the summary counts), 1 when the run could not work (the API server or the
Lease unreachable), 2 for configuration that cannot work.
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Mapping

import httpx
import urllib3

from taskcore import logs
from taskcore.errors import ServiceError
from taskcore.fn import FNClient
from taskcore.github import GitHubApp
from taskcore.keycloak import Keycloak
from taskcore.kube import TaskStore, load_api_client
from taskcore.settings import Settings, SettingsError

from . import download
from .delivery import Deliverer
from .lease import Lease
from .reconcile import Reconciler
from .run import Poller, Summary

log = logging.getLogger("poller")

USAGE = """\
usage: python -m poller

One run of FNTC's poller, as its CronJob starts it: lists the Tasks, submits
those deferred at admission, reads each unfinished Task's FN task and writes
its phase, delivers succeeded Tasks' results to GitHub, cancels FN tasks no
Task keeps, and ends with one summary line on stderr. A second run while one
holds the Lease (FNTC_LEASE_NAMESPACE) does nothing.

Exit codes: 0 the run completed (Tasks that met trouble are counted in the
summary's errors) or was skipped for the Lease; 1 the run could not work (the
API server or the Lease unreachable); 2 the configuration cannot work.

Configuration comes from the environment: KUBECONFIG outside a cluster, and the
FNTC_* settings shared with the webhook (see README.md), chiefly:

  FNTC_FN_URL, FNTC_KEYCLOAK_URL    the FN's API and Keycloak
  FNTC_KEYCLOAK_CLIENT_SECRET, FNTC_KEYCLOAK_ADMIN_USERNAME, ..._PASSWORD
  FNTC_GITHUB_APP_ID, FNTC_GITHUB_APP_KEY_FILE    the GitHub App
  FNTC_CLUSTER_NAME    names this cluster in the marker on each FN task
  FNTC_NAMESPACES      namespaces to watch (default all)
  FNTC_STUCK_AFTER     seconds in one phase before a Task is marked Stuck
  FNTC_ORPHAN_GRACE, FNTC_ORPHAN_LOOKBACK    which FN tasks the orphan sweep
                       looks at: older than the grace, younger than the lookback
  FNTC_CONCURRENCY     Tasks worked on at once
"""


Clock = Callable[[], datetime]


def wall_clock() -> datetime:
    return datetime.now(timezone.utc)


def build_reconciler(settings: Settings, *, now: Clock = wall_clock) -> Reconciler:
    """The reconciler and the clients it talks through; raises SettingsError when the
    settings cannot work.

    ``now`` is the time every part reads (status times, backoff, stuck
    detection, GitHub App tokens); tests hand in a controllable clock.
    """
    keycloak = Keycloak.from_settings(settings)
    fn = FNClient(settings.fn_url, timeout=settings.request_timeout,
                  transport=download.BoundedResults(httpx.HTTPTransport(),
                                                    max_bytes=download.RESULTS_MAX_BYTES,
                                                    seconds=settings.results_timeout))
    if not settings.github_app_id:
        raise SettingsError("missing configuration: FNTC_GITHUB_APP_ID")
    try:
        key = Path(settings.github_app_key_file).read_bytes()
    except OSError as error:
        raise SettingsError(f"FNTC_GITHUB_APP_KEY_FILE: cannot read "
                            f"{settings.github_app_key_file}: {error.strerror}") from error
    github = GitHubApp(api_url=settings.github_api_url, app_id=settings.github_app_id,
                       private_key_pem=key, timeout=settings.request_timeout,
                       now=lambda: now().timestamp())
    deliverer = Deliverer(fn=fn, github=github, branch_prefix=settings.results_branch_prefix,
                          retry_base=settings.submit_backoff_base,
                          retry_cap=settings.submit_backoff_cap,
                          results_timeout=settings.results_timeout, now=now)
    return Reconciler(settings, keycloak=keycloak, fn=fn, deliverer=deliverer, now=now)


def build(settings: Settings, api_client, *, now: Clock = wall_clock) -> Poller:
    """Wire the poller's parts from settings; raises SettingsError when they cannot work."""
    return Poller(settings, tasks=TaskStore(api_client),
                  reconciler=build_reconciler(settings, now=now), now=now)


def run_once(env: Mapping[str, str] | None = None, *,
             now: Clock = wall_clock) -> tuple[int, Summary | None]:
    """One run; returns the exit code and, when the run happened, its summary."""
    env = os.environ if env is None else env
    try:
        settings = Settings.from_env(env)
    except SettingsError as error:
        print(f"poller: {error}", file=sys.stderr)
        return 2, None
    logs.configure(settings.log_format)
    try:
        api_client = load_api_client(env.get("KUBECONFIG"))
    except Exception as error:  # noqa: BLE001 - a broken kubeconfig is configuration too
        print(f"poller: cannot configure the Kubernetes client: {error}", file=sys.stderr)
        return 2, None
    try:
        poller = build(settings, api_client, now=now)
    except SettingsError as error:
        api_client.close()
        print(f"poller: {error}", file=sys.stderr)
        return 2, None

    lease = Lease(api_client, settings.lease_namespace, duration=settings.lease_duration,
                  identity=poller.identity)
    try:
        if not lease.acquire():
            print("poller run: skipped, another run holds the lease", file=sys.stderr)
            return 0, None
        with lease.kept():
            summary = poller.run()
    except (ServiceError, urllib3.exceptions.HTTPError, OSError) as error:
        print(f"poller: the run could not work: {error}", file=sys.stderr)
        return 1, None
    finally:
        try:
            lease.release()
        except (urllib3.exceptions.HTTPError, OSError):
            pass    # the Lease expires by itself
        api_client.close()
        poller.reconciler.close()
    print(summary.line(), file=sys.stderr)
    return 0, summary


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv:
        wanted = argv[0] in ("-h", "--help")
        print(USAGE, end="", file=sys.stdout if wanted else sys.stderr)
        return 0 if wanted else 2
    return run_once()[0]


if __name__ == "__main__":
    sys.exit(main())
