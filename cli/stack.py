"""``ffwatt stack up|down|status|env|discovery``: the master's services on this machine."""

from __future__ import annotations

import socket
import time
from typing import Annotated

import typer
from rich.table import Table

from cli._output import console
from ffwatt.settings import load_settings

app = typer.Typer(help="The master: Prefect server, campaign worker, target discovery, metrics store and "
                       "alerting, TLS proxy.",
                  no_args_is_help=True)


@app.command()
def up(
    generate_cert: Annotated[bool, typer.Option(
        "--generate-cert", help="Make a CA and a server certificate and serve the API over HTTPS too.")] = False,
    cert_name: Annotated[list[str] | None, typer.Option(
        help="Names and addresses the certificate covers (default: master host, hostname, localhost).")] = None,
    api_only: Annotated[bool, typer.Option(
        "--api-only", help="Only API processes, on another machine of a master spread over several: its "
                           "PostgreSQL, FFWATT_REDIS_URL, and its credentials file copied here.")] = False,
) -> None:
    """Start the master's services (idempotent) and print where they are."""
    from master.stack import stack_up
    from master.tls import generate_ca_and_server_cert

    settings = load_settings()
    tls = settings.tls_dir
    if generate_cert and (tls / "server.pem").exists():
        # Agents already trust this CA: a new one would lock them out.
        console.print(f"using the existing certificate in {tls} (delete it to make a new CA)")
    elif generate_cert:
        names = cert_name or list(dict.fromkeys([settings.master_host, socket.gethostname(), "localhost"]))
        ca = generate_ca_and_server_cert(tls, names)
        console.print(f"certificate for {', '.join(names)}; clients verify with {ca}")
    _print_status(stack_up(settings, api_only=api_only))
    if api_only:
        console.print("behind the master's TLS proxy: add this machine's host:port to its FFWATT_API_PEERS")
        return
    console.print(f"client environment: eval \"$(ffwatt stack env)\"  (credentials in {settings.auth_file})")


@app.command()
def down() -> None:
    """Stop the master's services."""
    from master.stack import stack_down

    stopped = stack_down(load_settings())
    console.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")


def _print_status(statuses: list) -> None:
    table = Table(title="services", title_justify="left")
    for column in ("service", "pid", "state", "url", "log"):
        table.add_column(column)
    for status in statuses:
        state = "[green]running[/]" if status.running else "[red]stopped[/]"
        table.add_row(status.name, str(status.pid or "-"), state, status.url, str(status.log))
    console.print(table)


@app.command()
def status() -> None:
    """What runs, where, its URL; and every node that registered, online or not."""
    from ffwatt.fleet.nodes import list_nodes
    from master.stack import served_database, sqlite_warning, stack_status

    settings = load_settings()
    statuses = stack_status(settings)
    _print_status(statuses)
    if any(s.name == "metrics-store" and s.running for s in statuses):
        _print_monitoring(settings)
    if not any(s.name == "prefect-server" and s.running for s in statuses):
        return
    _use_stack_api(settings)
    table = Table(title="nodes", title_justify="left")
    for column in ("node", "state", "pools", "last heartbeat", "exporters"):
        table.add_column(column)
    now = time.time()
    records = list_nodes()
    for record in records:
        state = "[green]online[/]" if record.online(now) else "[red]offline[/]"
        seen = f"{now - record.heartbeat_at:.0f} s ago" if record.heartbeat_at else "never"
        table.add_row(record.node, state, ",".join(record.pools), seen,
                      " ".join(f"{k}={v}" for k, v in sorted(record.exporters.items())))
    console.print(table)
    warning = sqlite_warning(served_database(settings), sum(record.online(now) for record in records))
    if warning:
        console.print(f"[yellow]warning[/]: {warning}", highlight=False)


def _print_monitoring(settings) -> None:  # type: ignore[no-untyped-def]
    from master.monitoring import monitoring_status

    found = monitoring_status(settings)
    if found.error:
        console.print(f"metrics store {found.store_url}: [red]not answering[/] ({found.error})")
        return
    console.print(f"metrics store {found.store_url}: {found.targets_up} targets up, "
                  f"{len(found.targets_down)} down", highlight=False)
    for line in found.targets_down:
        console.print(f"  [red]down[/] {line}", highlight=False)
    console.print(f"firing alerts: {len(found.firing) or 'none'}", highlight=False)
    for line in found.firing:
        console.print(f"  [red]firing[/] {line}", highlight=False)


def _use_stack_api(settings) -> None:  # type: ignore[no-untyped-def]
    import os

    from master.stack import client_env

    for key, value in client_env(settings).items():
        os.environ.setdefault(key, value)


@app.command()
def env() -> None:
    """Print the environment a client needs for this stack (`eval "$(ffwatt stack env)"`)."""
    import shlex

    from master.stack import client_env

    settings = load_settings()
    tls = settings.tls_dir / "ca.pem"
    url = f"https://{settings.master_host}:{settings.master_tls_port}/api" if tls.exists() else None
    for key, value in client_env(settings, url).items():
        print(f"export {key}={shlex.quote(value)}")


@app.command(hidden=True)
def worker() -> None:
    """Serve the master's pool (campaign flows) with a warm worker until SIGTERM (run by `stack up`)."""
    import signal
    import threading

    from agent.warm import Pace, run_warm_workers

    settings = load_settings()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    run_warm_workers(["master"], node=settings.node, queue=None, limit=None, stop=stop,
                     pace=Pace(heartbeat_s=settings.worker_heartbeat_s, poll_s=settings.master_poll_s))


@app.command()
def discovery(listen: Annotated[str | None, typer.Option(
        help="HOST:PORT [default: every interface, at FFWATT_DISCOVERY_PORT]")] = None) -> None:
    """Serve live nodes' targets (/targets, HTTP-SD), the master's metrics (/metrics) and an alert sink (/alerts)."""
    from ffwatt.ports import parse_listen
    from master.discovery import serve_discovery

    settings = load_settings()
    host, port = parse_listen(f":{settings.discovery_port}" if listen is None else listen, settings.discovery_port)
    serve_discovery(host, port, settings)
