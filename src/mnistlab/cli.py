"""The ``mnistlab`` command: parses options, calls the library, prints. Nothing else."""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

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

from .core.errors import DownloadError, MnistlabError, StepFailed, StoreError
from .models.fitting import ACCELERATED

# The library is imported inside the commands: `mnistlab --help` and a usage error then cost
# typer and rich only (0.55 s -> see the commit), not pydantic, numpy and every section.

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="The complete machine-learning study of an MNIST-like dataset.")
data_app = typer.Typer(no_args_is_help=True, help="List and inspect datasets.")
app.add_typer(data_app, name="data")
out = Console()
err = Console(stderr=True)
INTERRUPTED = "interrupted: finished steps are saved; run the same command again to resume"
# Set by the options and commands, read by main() when an unexpected error must be reported.
_state: dict = {"debug": False, "run_folder": None}


def _print_version(value: bool) -> None:
    if value:
        from . import __version__

        out.print(f"mnistlab {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _global_options(
    debug: Annotated[bool, typer.Option(
        "--debug", help="show the full traceback of an unexpected error")] = False,
    version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True,
        help="print mnistlab's version and exit")] = False,
) -> None:
    _state["debug"] = debug


@contextmanager
def _stop_on_ctrl_c(grace_s: float = 5.0):
    """Ctrl-C raises KeyboardInterrupt here as usual; should a library swallow it (numba's
    first-run compilation inside UMAP does), the process exits after ``grace_s`` anyway.
    Nothing finished is lost: every finished step is already committed to the run folder."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handled = threading.Event()

    def on_sigint(signum, frame):
        _state["interrupted"] = True

        def deadline():
            if not handled.wait(grace_s):
                err.print(INTERRUPTED, highlight=False, soft_wrap=True)
                os._exit(130)

        threading.Thread(target=deadline, daemon=True).start()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    except KeyboardInterrupt:
        handled.set()
        raise
    finally:
        signal.signal(signal.SIGINT, previous)


@data_app.command("list")
def data_list() -> None:
    """Every dataset mnistlab knows, whether it is available offline here, and its size."""
    from .data.datasets import CATALOG

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
    from .data.datasets import load_dataset
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


@data_app.command("check")
def data_check(
    name: Annotated[str, typer.Argument(help="dataset name or FORMAT:PATH")],
    csv: Annotated[Path | None, typer.Option(  # noqa: UP007 (typer needs Optional)
        "--csv", help="write every suspect image as CSV to this file ('-': standard output)",
        show_default=False)] = None,
    json_path: Annotated[Path | None, typer.Option(  # noqa: UP007
        "--json", help="write the suspects, counts and thresholds as JSON to this file",
        show_default=False)] = None,
    checker: Annotated[str, typer.Option(
        help="model whose out-of-fold probabilities find label errors: auto, svc+mlp, knn")
    ] = "auto",
    seed: Annotated[int, typer.Option(help="seed of the PCA, the folds and the checker")] = 0,
) -> None:
    """Duplicates, train/test leakage, likely label errors and outliers of a dataset (the
    study's data check, computed here without a run folder)."""
    import json

    from pydantic import ValidationError

    from .core.errors import ConfigError
    from .core.files import atomic_write_bytes
    from .data.datasets import load_dataset
    from .engine.step import call_step
    from .report.quality import counts, issues_csv, issues_document
    from .sections import quality

    try:
        params = quality.Params(checker=checker)
    except ValidationError:
        raise ConfigError(f"--checker {checker}: use auto, svc+mlp or knn") from None
    for option, path in (("--csv", csv), ("--json", json_path)):
        if path is not None and str(path) != "-" and (path.is_dir() or not path.parent.is_dir()):
            raise ConfigError(f"{option} {path}: " + ("is a folder" if path.is_dir() else
                                                       f"no folder {path.parent}"))
    data = load_dataset(name, show_progress=True)
    with err.status(f"checking {data.name}"):
        found = call_step(quality.neighbours, data, params, seed)
        checked = call_step(quality.labels, data, params, seed, neighbours=found)
    results = {"neighbours": found, "labels": checked}
    grid = Table("kind", "train", "test", title=f"{data.name}: suspect images")
    for kind, per_split in counts(results).items():
        grid.add_row(kind, f"{per_split['train']:,}", f"{per_split['test']:,}")
    err.print(grid)
    err.print(f"near duplicate: closer than {found.near_threshold:.1f} grey levels RMS "
              f"({found.near_factor:g} x the median nearest-neighbour distance "
              f"{found.nearest_rms_median:.1f}); label checker {checked.checker}: out-of-fold "
              f"accuracy {checked.oof_accuracy:.4f}", highlight=False, soft_wrap=True)
    document = issues_document(results, data.class_names, data.name)
    for path, payload in ((csv, issues_csv(document["issues"])),
                          (json_path, json.dumps(document, indent=1))):
        if path is None:
            continue
        if str(path) == "-":
            sys.stdout.write(payload)
            continue
        try:
            atomic_write_bytes(path, payload.encode())
        except OSError as exc:
            raise ConfigError(f"{path}: cannot write ({exc.strerror})") from None
        err.print(f"wrote {path}", highlight=False)


class RichProgress:
    """Section, step and elapsed time on stderr."""

    def __init__(self, note: str = "") -> None:
        self.note = note  # a line said above the bars once the study starts computing
        self.bar = Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"),
                            TextColumn("{task.fields[step]}"), BarColumn(),
                            MofNCompleteColumn(), TimeElapsedColumn(), console=err)
        self.task = None
        self.tasks: dict[str, Any] = {}  # section title -> its bar
        # steps of a section whose bar does not exist yet: a step computed in a process of its
        # own may be found done (or end) before its section starts here
        self.early: dict[str, int] = {}

    @contextmanager
    def running(self):
        with self.bar:
            yield self

    def section(self, title: str, n_steps: int) -> None:
        if self.note:
            self.bar.console.print(self.note, highlight=False, soft_wrap=True)
            self.note = ""
        if self.task is not None:
            self.bar.stop_task(self.task)
        self.task = self.tasks[title] = self.bar.add_task(
            title, total=n_steps, completed=self.early.pop(title, 0), step="")

    def step(self, name: str) -> None:
        self.bar.update(self.task, step=name)

    def advance(self, section: str | None = None) -> None:
        """One more step done, of the current section or of the section titled ``section``
        (a step computed in a process of its own may end before or after its section)."""
        if section is not None and section not in self.tasks:
            self.early[section] = self.early.get(section, 0) + 1
        elif self.task is not None:
            self.bar.advance(self.tasks.get(section, self.task))


def _default_dataset(quiet: bool):
    from .data.datasets import load_dataset

    try:
        return load_dataset("mnist", show_progress=not quiet)
    except DownloadError as exc:
        err.print(f"note: mnist is not cached and could not be downloaded "
                  f"({str(exc).split(':', 1)[0]}); using the bundled mnist-5k instead",
                  highlight=False, soft_wrap=True)
        return load_dataset("mnist-5k")


def _check_run_folder(folder: Path) -> None:
    """``--out`` must be a folder we can create and write, before any computing starts."""
    if folder.exists() and not folder.is_dir():
        raise StoreError(f"--out {folder}: exists and is not a folder")
    existing = next((p for p in [folder, *folder.parents] if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise StoreError(f"--out {folder}: {existing} is a file, not a folder")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise StoreError(f"--out {folder}: {existing} is not writable")


@app.command()
def study(
    dataset: Annotated[str | None, typer.Option(  # noqa: UP007 (typer needs Optional)
        help="dataset name or FORMAT:PATH (several: a,b, one study each); default: mnist "
             "if cached or downloadable, else mnist-5k")] = None,
    profile: Annotated[str, typer.Option(
        help="full: everything the seed does on all the data; quick: small subsets, "
             "approximate")] = "full",
    out_dir: Annotated[Path | None, typer.Option(  # noqa: UP007
        "--out", help="run folder; default ./mnistlab-runs/DATASET-PROFILE")] = None,
    config: Annotated[Path | None, typer.Option(help="TOML file of parameters")] = None,  # noqa: UP007
    seed: Annotated[int | None, typer.Option(help="seed of every random choice")] = None,  # noqa: UP007
    engine: Annotated[str | None, typer.Option(  # noqa: UP007
        help=f"library fitting {ACCELERATED}: "
             "auto (scikit-learn-intelex where installed), sklearn or sklearnex; overrides "
             "the config's")] = None,
    seeds: Annotated[str | None, typer.Option(  # noqa: UP007
        help="several studies, one per seed, e.g. 0,1,2 (with --dataset a,b: every pair); "
             "each in DIR/DATASET-PROFILE-seedS, and DIR/summary.html")] = None,
    print_config: Annotated[bool, typer.Option(
        "--print-config", help="print the full configuration as TOML and exit")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress display")] = False,
    workers: Annotated[int, typer.Option(
        min=0, help="run the steps on a local Dask cluster of N single-threaded workers "
                    "(127.0.0.1; needs Dask: pip install 'mnistlab\\[dask]')")] = 0,
    cluster: Annotated[str | None, typer.Option(  # noqa: UP007
        help="run the steps on the Dask scheduler at this address, e.g. tcp://HOST:8786")
    ] = None,
    dashboard: Annotated[bool, typer.Option(
        "--dashboard", help="with --workers: serve Dask's dashboard on :8787")] = False,
) -> None:
    """Run the whole study and write DIR/report.html (finished steps are never recomputed)."""
    from .data.datasets import load_dataset
    from .models.fitting import resolve_engine
    from .report import BackgroundDrawing, build_report
    from .study.config import PROFILES, config_toml, load_config
    from .study.runner import run_study

    if workers and cluster:
        raise MnistlabError("--workers and --cluster: choose one")
    if seeds is not None or (dataset and "," in dataset):
        return _many_studies(dataset, seed, seeds, profile, out_dir, config, quiet, workers,
                             cluster, dashboard, engine)
    if profile not in PROFILES:
        raise MnistlabError(f"--profile {profile}: must be one of {', '.join(PROFILES)}")
    cfg = load_config(config, profile=profile, seed=seed, engine=engine)
    if print_config:
        sys.stdout.write(config_toml(cfg))
        return
    if out_dir is not None:
        _check_run_folder(out_dir)
    data = load_dataset(dataset, show_progress=not quiet) if dataset else _default_dataset(quiet)
    folder = out_dir or Path("mnistlab-runs") / re.sub(r"[^\w.-]+", "_",
                                                       f"{data.name}-{profile}").strip("_")
    _check_run_folder(folder)
    engine = resolve_engine(cfg.engine)  # one line and no study where it cannot run
    _state["run_folder"] = folder
    started = time.perf_counter()
    try:
        with (_stop_on_ctrl_c(), _executor(cluster, workers, dashboard) as executor,
              BackgroundDrawing(folder) as drawing):
            outcome = run_study(data, cfg, folder, profile=profile,
                                progress=None if quiet else RichProgress(engine.note),
                                executor=executor,
                                section_done=drawing)
            drawing.finish()
    except KeyboardInterrupt:  # typer would turn it into a silent exit 130
        err.print(INTERRUPTED, highlight=False, soft_wrap=True)
        raise typer.Exit(130) from None
    report = build_report(folder)
    computed = len(outcome.computed)
    out.print(f"{data.name}: {computed} step(s) computed, {len(outcome.records) - computed} "
              f"already done, {time.perf_counter() - started:.1f} s. Report: {report}",
              highlight=False, soft_wrap=True)


def _many_studies(dataset, seed, seeds, profile, out_dir, config, quiet, workers, cluster,
                  dashboard, engine) -> None:
    """Every (dataset, seed) study into its own run folder, one graph on the executor, and a
    summary next to them."""
    from .data.datasets import load_dataset
    from .models.fitting import resolve_engine
    from .report import build_report
    from .report.summary import write_summary
    from .study.config import PROFILES, load_config
    from .study.runner import run_studies

    if profile not in PROFILES:
        raise MnistlabError(f"--profile {profile}: must be one of {', '.join(PROFILES)}")
    if seed is not None and seeds is not None:
        raise MnistlabError("--seed and --seeds: choose one")
    names = [n.strip() for n in (dataset or "mnist-5k").split(",")]
    try:
        seed_list = [int(s) for s in (seeds or str(seed or 0)).split(",")]
    except ValueError:
        raise MnistlabError(f"--seeds {seeds}: give integers separated by commas, e.g. 0,1,2"
                            ) from None
    if any(not n for n in names) or len(set(names)) != len(names):
        raise MnistlabError(f"--dataset {dataset}: give distinct names separated by commas")
    if len(set(seed_list)) != len(seed_list) or min(seed_list) < 0:
        raise MnistlabError(f"--seeds {seeds}: give distinct seeds >= 0")
    parent = out_dir or Path("mnistlab-runs")
    _check_run_folder(parent)
    jobs = []
    for name in names:
        data = load_dataset(name, show_progress=not quiet)
        for s in seed_list:
            folder = parent / re.sub(r"[^\w.-]+", "_", f"{data.name}-{profile}-seed{s}").strip("_")
            jobs.append((data, load_config(config, profile=profile, seed=s, engine=engine),
                         folder))
    engine = resolve_engine(jobs[0][1].engine)
    _state["run_folder"] = parent
    started = time.perf_counter()
    try:
        with _stop_on_ctrl_c(), _executor(cluster, workers, dashboard) as executor:
            outcomes = run_studies(jobs, profile=profile, executor=executor,
                                   progress=None if quiet else RichProgress(engine.note))
    except KeyboardInterrupt:
        err.print(INTERRUPTED, highlight=False, soft_wrap=True)
        raise typer.Exit(130) from None
    for _, _, folder in jobs:
        build_report(folder)
    summary = write_summary(parent, [folder for _, _, folder in jobs])
    computed = sum(len(o.computed) for o in outcomes)
    out.print(f"{len(jobs)} studies: {computed} step(s) computed, "
              f"{time.perf_counter() - started:.1f} s. Summary: {summary}",
              highlight=False, soft_wrap=True)


@contextmanager
def _executor(cluster: str | None, workers: int, dashboard: bool):
    """A Dask executor when asked for (Dask imported only then), else None: this process
    runs the steps."""
    if not cluster and not workers:
        yield None
        return
    from .engine.cluster import DaskExecutor, dask_client

    with dask_client(cluster, workers, dashboard) as client:
        yield DaskExecutor(client)


@app.command()
def report(folder: Annotated[Path, typer.Argument(help="a run folder")]) -> None:
    """Rebuild DIR/report.html from stored results, recomputing nothing."""
    from .report import build_report

    if not folder.is_dir():
        raise StoreError(f"{folder}: no such run folder")
    _state["run_folder"] = folder
    out.print(f"Report: {build_report(folder)}", highlight=False, soft_wrap=True)


@app.command()
def predict(
    run: Annotated[Path, typer.Argument(help="a run folder of a finished study")],
    inputs: Annotated[list[Path], typer.Argument(
        help="image files (PNG, JPEG, WEBP, BMP, GIF; any size, colour or grey), folders of "
             "them, or IDX / npz batches of the dataset's shape")],
    model: Annotated[list[str] | None, typer.Option(  # noqa: UP007
        "--model", "-m", help="a model name, best (highest validation accuracy) or all; "
                              "repeat for several [default: all]")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON on stdout")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="CSV on stdout, one row per image "
                                                       "and model")] = False,
) -> None:
    """Predict the class of images with the models a study trained.

    Digit datasets: an image not already of the dataset's shape is prepared as MNIST was (ink
    on a dark field, cropped, longer side 20 px, centred by mass in 28x28); other datasets:
    resized.
    """
    if as_json and as_csv:
        raise MnistlabError("--json and --csv: choose one")
    from .sections.robustness import familiarity_scores
    from .serve.predict import gather, predict_all
    from .study.catalog import choose_models, familiarity_reference

    if not run.is_dir():
        raise StoreError(f"{run}: no such run folder")
    chosen = choose_models(run, model or ["all"])
    # The images first: a mistake in them is told at once, not after loading every model
    # (skops' import alone takes seconds).
    batch = gather(inputs, chosen.image_shape, chosen.digits)
    models = chosen.load()
    results = predict_all(models, batch)
    classes = models[0].class_names
    reference = familiarity_reference(run)
    far = None if reference is None else Far(familiarity_scores(batch.images, reference),
                                             reference.threshold)
    if as_json:
        _print_json(batch, results, classes, far)
    elif as_csv:
        _print_csv(batch, results, classes, far)
    else:
        _print_table(batch, results, classes, models, far)


class Far:
    """How far each image lies from the training images, against the study's threshold."""

    def __init__(self, distances, threshold: float):
        self.distances, self.threshold = distances, threshold

    def of(self, i: int) -> dict:
        d = float(self.distances[i])
        return {"distance": round(d, 4), "threshold": round(self.threshold, 4),
                "far": d > self.threshold}


def _print_json(batch, results, classes, far: Far | None) -> None:
    import json

    items = []
    for i, name in enumerate(batch.names):
        item = {"input": name, "predictions": {},
                "familiarity": None if far is None else far.of(i)}
        if batch.labels is not None:
            item["label"] = int(batch.labels[i])
        for model_name, r in results.items():
            k = int(r["pred"][i])
            item["predictions"][model_name] = {
                "class": k, "name": classes[k], "kind": r["kind"],
                ("probabilities" if r["kind"] == "probability" else "scores"):
                    [round(float(v), 6) for v in r["scores"][i]]}
        items.append(item)
    sys.stdout.write(json.dumps(items, indent=1) + "\n")


def _print_csv(batch, results, classes, far: Far | None) -> None:
    import csv

    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(["input", "label", "model", "class", "name", "kind",
                     *[f"p_{c}" for c in classes], "distance", "far"])
    for i, name in enumerate(batch.names):
        label = "" if batch.labels is None else int(batch.labels[i])
        familiar = ["", ""] if far is None else [(f := far.of(i))["distance"], int(f["far"])]
        for model_name, r in results.items():
            k = int(r["pred"][i])
            writer.writerow([name, label, model_name, k, classes[k], r["kind"],
                             *[f"{v:.6g}" for v in r["scores"][i]], *familiar])


def _print_table(batch, results, classes, models, far: Far | None) -> None:
    import numpy as np
    from rich.markup import escape  # class and file names are the user's, not markup

    classes = [escape(c) for c in classes]
    if len(batch.names) <= 5:  # a few images: every model's probabilities for each
        for i, name in enumerate(batch.names):
            grid = Table("model", "class", "name", "top", f"per class ({', '.join(classes)})",
                         title=escape(name))
            for m in models:
                r = results[m.name]
                k = int(r["pred"][i])
                digits = 2 if r["kind"] == "probability" else 1
                grid.add_row(m.name, str(k), classes[k],
                             f"{r['scores'][i][k]:.3f}" + ("" if digits == 2 else " score"),
                             " ".join(f"{v:.{digits}f}" for v in r["scores"][i]))
            out.print(grid)
            if far is not None and far.of(i)["far"]:
                out.print(f"{escape(name)} is far from the training images (distance "
                          f"{far.of(i)['distance']:.1f}, above {far.threshold:.1f}): the "
                          "predictions above may mean little", highlight=False, soft_wrap=True)
    else:
        grid = Table("input", *[m.name for m in models], title="predicted class (top "
                     "probability or, for SVMs, top decision score)")
        for i, name in enumerate(batch.names):
            cells = []
            for m in models:
                r = results[m.name]
                k = int(r["pred"][i])
                cells.append(f"{classes[k]} ({r['scores'][i][k]:.3f}"
                             f"{'' if r['kind'] == 'probability' else ' score'})")
            grid.add_row(escape(name), *cells)
        out.print(grid)
        if far is not None and (flagged := [n for i, n in enumerate(batch.names)
                                            if far.of(i)["far"]]):
            out.print(f"{len(flagged):,} of {len(batch.names):,} images are far from the "
                      f"training images (distance above {far.threshold:.1f}), their predictions "
                      f"may mean little: {', '.join(escape(n) for n in flagged[:5])}"
                      f"{' ...' if len(flagged) > 5 else ''}", highlight=False, soft_wrap=True)
    if batch.labels is not None:
        accuracy = ", ".join(f"{m.name} {np.mean(results[m.name]['pred'] == batch.labels):.4f}"
                             for m in models)
        out.print(f"accuracy on the {len(batch.labels):,} labelled images: {accuracy}",
                  highlight=False, soft_wrap=True)


@app.command()
def serve(
    run: Annotated[Path, typer.Argument(help="a run folder of a finished study")],
    host: Annotated[str, typer.Option(help="address to listen on; anything but the loopback "
                                           "exposes the models to the network")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port")] = 8000,
) -> None:
    """Serve the study's models: a draw-a-digit page at / and a JSON API under /api
    (its OpenAPI schema at /openapi.json). Ctrl-C stops it."""
    import socket

    if not run.is_dir():
        raise StoreError(f"{run}: no such run folder")
    from .serve.server import LOOPBACK, create_app

    try:  # a port in use is the user's to choose again, not a uvicorn traceback
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise MnistlabError(f"--host {host} --port {port}: cannot listen there "
                            f"({exc.strerror or exc})") from None
    if host not in LOOPBACK:
        err.print(f"warning: serving on {host}: anyone who can reach this machine on port "
                  f"{port} can use the models (no authentication)", highlight=False,
                  soft_wrap=True)
    application = create_app(run, host=host)
    import uvicorn

    shown = f"[{host}]" if ":" in host else host
    out.print(f"Serving the models of {run} at http://{shown}:{port}/ (Ctrl-C stops)",
              highlight=False, soft_wrap=True)
    uvicorn.run(application, host=host, port=port, log_level="warning", access_log=False)


def _write_traceback(exc: BaseException) -> Path:
    """The full traceback of an unexpected error, in the run folder's log when there is one."""
    import tempfile
    import traceback

    folder = _state.get("run_folder")
    log = (Path(folder) / "mnistlab.log" if folder and Path(folder).is_dir()
           else Path(tempfile.gettempdir()) / f"mnistlab-error-{os.getpid()}.log")
    text = "".join(traceback.format_exception(exc))
    try:
        with open(log, "a") as f:
            f.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} mnistlab {' '.join(sys.argv[1:])}\n")
            f.write(text)
    except OSError:
        log = Path(tempfile.mkstemp(prefix="mnistlab-error-", suffix=".log")[1])
        log.write_text(text)
    return log


def main() -> None:
    """Entry point: usage errors are typer's (usage, exit 2); errors a user caused are one line
    (exit 2); a bug is one line naming where its traceback went (exit 1), unless --debug."""
    try:
        _main()
    except SystemExit as exc:
        _exit_without_finalising(exc.code)
    _exit_without_finalising(0)


def _exit_without_finalising(code: int | str | None) -> None:
    """Exit once every thread but daemons is done, the exit handlers have run (logging's,
    multiprocessing's, which joins its children) and the streams are flushed, without Python's
    finalisation, which frees every module one by one: with torch and scikit-learn loaded it
    took 1.9 s after the report was written (os._exit: 0.06 s)."""
    import atexit

    if any(t.is_alive() and not t.daemon and t is not threading.main_thread()
           for t in threading.enumerate()):
        raise SystemExit(code)  # Python waits for them
    if code is not None and not isinstance(code, int):  # what SystemExit does with a message
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be said there
            pass
    os._exit(code or 0)


def _main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app(prog_name="mnistlab")
    except MnistlabError as exc:
        err.print(f"error: {exc}", highlight=False, soft_wrap=True, markup=False)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        err.print(INTERRUPTED, highlight=False, soft_wrap=True)
        raise SystemExit(130) from None
    except Exception as exc:  # a bug: one line by default, the traceback on request
        if _state.get("interrupted"):
            # Ctrl-C raised inside a compiled library, which turned the KeyboardInterrupt into
            # an error of its own (a Cython buffer's "not a valid PEP 3118 buffer format")
            _write_traceback(exc)
            err.print(INTERRUPTED, highlight=False, soft_wrap=True)
            raise SystemExit(130) from None
        if _state.get("debug"):
            raise
        what = f"{exc.where}: " if isinstance(exc, StepFailed) else ""
        cause = exc.__cause__ if isinstance(exc, StepFailed) and exc.__cause__ else exc
        log = _write_traceback(exc)
        first = (str(cause).strip().splitlines() or [""])[0]
        err.print(f"internal error: {what}{type(cause).__name__}: {first} (full traceback in "
                  f"{log}; rerun with --debug to show it)",
                  highlight=False, soft_wrap=True, markup=False)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
