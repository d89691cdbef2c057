"""The ``mnistlab`` command: parses options, calls the library, prints. Nothing else."""

from __future__ import annotations

import logging
import re
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from .config import PROFILES, config_toml, load_config
from .datasets import CATALOG, load_dataset
from .errors import DownloadError, MnistlabError
from .render import build_report
from .runner import run_study

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="The complete machine-learning study of an MNIST-like dataset.")
data_app = typer.Typer(no_args_is_help=True, help="List and inspect datasets.")
app.add_typer(data_app, name="data")
out = Console()
err = Console(stderr=True)


@data_app.command("list")
def data_list() -> None:
    """Every dataset mnistlab knows, whether it is available offline here, and its size."""
    grid = Table("name", "offline here", "size", "description")
    for info in CATALOG:
        grid.add_row(info.name, "yes" if info.available() else "no (downloads on first use)",
                     info.images, info.description)
    out.print(grid)
    out.print("Your own data: idx:FOLDER (the four IDX files), npz:FILE (x_train, y_train, "
              "x_test, y_test), folder:FOLDER (train/ and test/ with one folder per class).")


@data_app.command("info")
def data_info(name: Annotated[str, typer.Argument(help="dataset name or FORMAT:PATH")]) -> None:
    """Shapes, classes, class balance and pixel statistics of a dataset (seed part 1)."""
    from .sections.explore import summarize

    s = summarize(load_dataset(name, show_progress=True))
    out.print(f"[bold]{s.name}[/bold]  ({s.source})")
    shapes = Table("split", "images", "labels", "dtype", "pixel mean", "pixel std",
                   "imbalance max/min")
    for split, shape, imb in (("train", s.train_shape, s.train_imbalance),
                              ("test", s.test_shape, s.test_imbalance)):
        shapes.add_row(split, str(tuple(shape)), f"({shape[0]},)", s.dtype,
                       f"{s.pixel_mean[split]:.2f}", f"{s.pixel_std[split]:.2f}", f"{imb:.3f}")
    out.print(shapes)
    n_tr, n_te = sum(s.train_counts), sum(s.test_counts)
    balance = Table("class", "train", "train %", "test", "test %")
    for name_, tr, te in zip(s.class_names, s.train_counts, s.test_counts):
        balance.add_row(name_, f"{tr:,}", f"{100 * tr / n_tr:.2f}", f"{te:,}",
                        f"{100 * te / n_te:.2f}")
    out.print(balance)
    out.print(f"{len(s.class_names)} classes; train/test class distributions differ by a "
              f"total-variation distance of {s.train_test_tv:.4f}.")


class RichProgress:
    """Section, step and elapsed time on stderr."""

    def __init__(self) -> None:
        self.bar = Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"),
                            TextColumn("{task.fields[step]}"), BarColumn(),
                            MofNCompleteColumn(), TimeElapsedColumn(), console=err)
        self.task = None

    @contextmanager
    def running(self):
        with self.bar:
            yield self

    def section(self, title: str, n_steps: int) -> None:
        if self.task is not None:
            self.bar.stop_task(self.task)
        self.task = self.bar.add_task(title, total=n_steps, step="")

    def step(self, name: str) -> None:
        self.bar.update(self.task, step=name)

    def advance(self) -> None:
        self.bar.advance(self.task)


def _default_dataset(quiet: bool):
    try:
        return load_dataset("mnist", show_progress=not quiet)
    except DownloadError as exc:
        err.print(f"note: mnist is not cached and could not be downloaded "
                  f"({str(exc).split(':', 1)[0]}); using the bundled mnist-5k instead",
                  highlight=False, soft_wrap=True)
        return load_dataset("mnist-5k")


@app.command()
def study(
    dataset: Annotated[str | None, typer.Option(  # noqa: UP007 (typer needs Optional)
        help="dataset name or FORMAT:PATH; default: mnist if cached or downloadable, "
             "else mnist-5k")] = None,
    profile: Annotated[str, typer.Option(
        help="full: everything the seed does on all the data; quick: small subsets, "
             "approximate")] = "full",
    out_dir: Annotated[Path | None, typer.Option(  # noqa: UP007
        "--out", help="run folder; default ./mnistlab-runs/DATASET-PROFILE")] = None,
    config: Annotated[Path | None, typer.Option(help="TOML file of parameters")] = None,  # noqa: UP007
    seed: Annotated[int | None, typer.Option(help="seed of every random choice")] = None,  # noqa: UP007
    print_config: Annotated[bool, typer.Option(
        "--print-config", help="print the full configuration as TOML and exit")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress display")] = False,
) -> None:
    """Run the whole study and write DIR/report.html (finished steps are never recomputed)."""
    if profile not in PROFILES:
        raise MnistlabError(f"--profile {profile}: must be one of {', '.join(PROFILES)}")
    cfg = load_config(config, profile=profile, seed=seed)
    if print_config:
        sys.stdout.write(config_toml(cfg))
        return
    data = load_dataset(dataset, show_progress=not quiet) if dataset else _default_dataset(quiet)
    folder = out_dir or Path("mnistlab-runs") / re.sub(r"[^\w.-]+", "_",
                                                       f"{data.name}-{profile}").strip("_")
    started = time.perf_counter()
    outcome = run_study(data, cfg, folder, profile=profile,
                        progress=None if quiet else RichProgress())
    report = build_report(folder)
    computed = len(outcome.computed)
    out.print(f"{data.name}: {computed} step(s) computed, {len(outcome.records) - computed} "
              f"already done, {time.perf_counter() - started:.1f} s. Report: {report}",
              highlight=False, soft_wrap=True)


@app.command()
def report(folder: Annotated[Path, typer.Argument(help="a run folder")]) -> None:
    """Rebuild DIR/report.html from stored results, recomputing nothing."""
    out.print(f"Report: {build_report(folder)}", highlight=False, soft_wrap=True)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app(standalone_mode=False)
    except MnistlabError as exc:
        err.print(f"error: {exc}", highlight=False, soft_wrap=True, markup=False)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        err.print("interrupted: finished steps are saved; run the same command again to resume")
        raise SystemExit(130) from None
    except (typer.Exit, SystemExit) as exc:
        raise SystemExit(getattr(exc, "exit_code", getattr(exc, "code", 0))) from None
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            raise SystemExit(exc.exit_code) from None
        raise


if __name__ == "__main__":
    main()
