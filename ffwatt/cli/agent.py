"""``ffwatt agent probe``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from ffwatt.cli._output import console
from ffwatt.settings import load_settings

app = typer.Typer(help="The worker-node side: what this node can do.", no_args_is_help=True)


@app.command()
def probe(json_output: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """Report this node: CPU, memory, GPUs, and which encoders really work (by a test encode each)."""
    from agent.probe import probe_node

    result = probe_node(load_settings())
    if json_output:
        print(result.model_dump_json(indent=2))
        return
    gpus = ", ".join(str(g["name"]) for g in result.gpus) or f"none ({result.gpu_unavailable})"
    memory = f"{result.memory_bytes / 2**30:.1f} GiB" if result.memory_bytes else "unknown"
    console.print(f"node {result.node}: {result.cpu_model}, {result.logical_cpus} CPUs, {memory}, "
                  f"kernel {result.kernel}\nGPUs: {gpus}\nFFmpeg {result.ffmpeg_version} ({result.ffmpeg})",
                  highlight=False)
    table = Table(title=f"encoders (pools: {', '.join(result.pools) or 'none'})", title_justify="left")
    for column in ("encoder", "pool", "works", "seconds", "why not"):
        table.add_column(column)
    for check in result.encoders:
        table.add_row(check.encoder, check.pool, "[green]yes[/]" if check.works else "[red]no[/]",
                      f"{check.seconds:.2f}", check.error or "")
    console.print(table)
