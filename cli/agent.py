"""``ffwatt agent probe``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from cli._output import Output, OutputOption, console
from ffwatt.settings import load_settings

app = typer.Typer(help="The worker-node side: what this node can do.", no_args_is_help=True)


@app.command()
def probe(output: OutputOption = Output.table) -> None:
    """Report this node: CPU, memory, GPUs, and which encoders really work (by a test encode each)."""
    from agent.probe import probe_node

    result = probe_node(load_settings())
    if output is Output.json:
        print(result.model_dump_json(indent=2))
        return
    facts = result.facts
    gpus = ", ".join(g.name for g in facts.gpus) or f"none ({facts.gpu_unavailable})"
    memory = f"{facts.memory_bytes / 2**30:.1f} GiB" if facts.memory_bytes else "unknown"
    console.print(f"node {facts.name}: {facts.cpu_model}, {facts.logical_cpus} CPUs, {memory}, "
                  f"kernel {facts.kernel}\nCPU energy: {facts.cpu_energy}\nGPUs: {gpus}\n"
                  f"FFmpeg {facts.ffmpeg_version} ({facts.ffmpeg_path})", highlight=False)
    table = Table(title=f"encoders (pools: {', '.join(result.pools) or 'none'})", title_justify="left")
    for column in ("encoder", "pool", "works", "seconds", "why not"):
        table.add_column(column)
    for check in result.encoders:
        table.add_row(check.encoder, check.pool, "[green]yes[/]" if check.works else "[red]no[/]",
                      f"{check.seconds:.2f}", check.error or "")
    console.print(table)


@app.command()
def start(
    master: Annotated[str, typer.Option(help="The master's API URL, e.g. https://master:4443/api.")],
    address: Annotated[str, typer.Option(help="This node's address the master and metrics store reach.")]
    = "127.0.0.1",
    auth_string: Annotated[str | None, typer.Option(
        envvar="PREFECT_API_AUTH_STRING", help="API credentials (user:password), as on the master.")] = None,
    ca: Annotated[str | None, typer.Option(
        envvar="PREFECT_API_SSL_CERT_FILE", help="CA certificate to verify an HTTPS master with.")] = None,
) -> None:
    """Serve this node's work pools, exporters and heartbeat until interrupted."""
    import logging
    import signal
    import threading

    from agent.node import run_agent
    from ffwatt.fleet.client import ApiClient

    ApiClient(master.rstrip("/"), auth_string, ca).check()  # one line now, not a traceback from every worker later
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    master_env = {"PREFECT_API_URL": master}
    if auth_string:
        master_env["PREFECT_API_AUTH_STRING"] = auth_string
    if ca:
        master_env["PREFECT_API_SSL_CERT_FILE"] = ca
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    run_agent(load_settings(), master_env=master_env, address=address, stop=stop)
