"""The ``s2pipe`` command line: parse, call one library function, report.

Conventions shared by every command (see README): results on stdout (one JSON object
with ``--json``), logs and progress on stderr, exit 0 done / 1 failed / 2 usage, one-line
``Error: ...`` messages, existing outputs refused unless ``--overwrite``.
Heavy libraries (torch, rasterio, geopandas) are imported inside the commands so that
``--help`` stays instant.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from s2pipe import __version__
from s2pipe.errors import S2PipeError

log = logging.getLogger("s2pipe")
T = TypeVar("T")


# --------------------------------------------------------------------------- plumbing
class _State:
    def __init__(self, verbose: int = 0, quiet: bool = False) -> None:
        self.verbose = verbose
        self.quiet = quiet


def _state() -> _State:
    ctx = click.get_current_context()
    return ctx.find_object(_State) or _State()


class S2PipeGroup(click.Group):
    """Turns :class:`S2PipeError` into one ``Error: ...`` line and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except S2PipeError as exc:
            state = ctx.find_object(_State)
            if state is not None and state.verbose:
                log.exception("traceback of the error below")
            raise click.ClickException(str(exc)) from None


def progress(total: int | None, desc: str, unit: str = "it") -> Callable[[int], None] | None:
    """A tqdm progress callback on stderr, or None when quiet or stderr is no terminal.

    The callback takes the number of steps just done; the bar is closed at exit.
    """
    if _state().quiet or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=False)
    click.get_current_context().call_on_close(bar.close)
    return bar.update


def progress_later(desc: str, unit: str) -> tuple[Callable[[int], None], Callable[[int], None]]:
    """``(on_total, tick)`` callbacks for a library call that learns its total first: the bar
    of :func:`progress` is made when the total is known."""
    bar: list[Callable[[int], None] | None] = [None]

    def on_total(n: int) -> None:
        bar[0] = progress(n, desc, unit=unit)

    def tick(n: int) -> None:
        if bar[0] is not None:
            bar[0](n)

    return on_total, tick


def jsonable(obj: Any) -> Any:
    """Dataclasses, paths and numpy scalars as plain JSON values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return obj.tolist()
    return obj


def build(options_class: Callable[..., T], **values: Any) -> T:
    """A command's options dataclass; the checks that tie options together live in it
    (the library's one place for them) and show here as usage errors (exit 2)."""
    from s2pipe.errors import OptionError

    try:
        return options_class(**values)
    except OptionError as exc:
        raise click.UsageError(str(exc)) from None


def report(result: Any, as_json: bool, human: str) -> None:
    """Print the result: one JSON object with --json, else the human summary."""
    if as_json:
        click.echo(json.dumps(jsonable(result), indent=None, sort_keys=False))
    else:
        click.echo(human)


def local_for_stac(stac: bool, *outputs: Path | None) -> None:
    """``--stac`` describes local maps: a usage error before any work for an URL output."""
    from s2pipe.remote import is_url

    if stac and any(o is not None and is_url(o) for o in outputs):
        raise click.UsageError("--stac describes local maps; write them locally, then upload maps and Items")


def describe_maps(maps: list[Any], **kwargs: Any) -> list[str]:
    """``--stac``: the STAC Item of each map written, beside it; their paths."""
    from s2pipe.catalog.publish import describe_map, stac_item_path

    for m in maps:
        describe_map(m, **kwargs)
    return [str(stac_item_path(m)) for m in maps]


# ---------------------------------------------------------------- shared options
overwrite_option = click.option(
    "--overwrite", is_flag=True, help="Replace outputs that already exist (refused otherwise).")
json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON object describing the outputs on stdout.")
stac_option = click.option(
    "--stac", is_flag=True, help="Also describe each map written as a STAC Item beside it (MAP.json): grid, "
                                 "bands, classes and colours, source Items, software and model.")
seed_option = click.option(
    "--seed", type=int, default=0, show_default=True, help="Random seed, for reproducible runs.")
trust_pixels_option = click.option(
    "--trust-pixels", is_flag=True,
    help="Where a product's dark pixels contradict the offset its metadata states (offset said to be in "
         "the DNs, darkest 1% of B12/B8A below 900), read the DNs as 10000 * reflectance instead of failing.")
device_option = click.option(
    "--device", default="auto", show_default=True,
    help="Torch device: auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps.")


from s2pipe.class_presets import PRESETS as CLASS_PRESETS  # noqa: E402  (stdlib only; names live once)


class ClassMapType(click.ParamType):
    """``--class-map``: a preset name or an existing CSV/JSON file (else a usage error)."""

    name = "PRESET|FILE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, Path) or str(value).strip().lower() not in CLASS_PRESETS:
            path = Path(value)
            if path.is_file():
                return path
            self.fail(f"{str(value)!r} is neither a preset ({', '.join(CLASS_PRESETS)}) nor an "
                      "existing CSV/JSON file", param, ctx)
        return str(value).strip().lower()


class ProductType(click.ParamType):
    """A product argument: an existing local path, or a URL (s3://, gs://, az://, http(s)://)
    kept as a string (checked when read)."""

    name = "PRODUCT"

    def __init__(self, *, must_exist: bool = True) -> None:
        self.must_exist = must_exist

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from s2pipe.remote import is_url

        if is_url(value):
            return str(value)
        path = Path(value)
        if self.must_exist and not path.exists():
            self.fail(f"{str(value)!r} does not exist (nor is it an s3://, gs://, az:// or https:// URL)",
                      param, ctx)
        return path


def cluster_options(f: Callable) -> Callable:
    """Where the tasks of a command run: this process (default), a Dask cluster, or a local one."""
    f = click.option("--workers", "local_workers", type=click.IntRange(1), metavar="N",
                     help="Start a local Dask cluster of N worker processes (on 127.0.0.1) for the "
                          "run; see docs/cluster.md.")(f)
    return click.option("--scheduler", envvar="S2PIPE_SCHEDULER", metavar="ADDRESS",
                        help="Run the tasks on the Dask cluster of this scheduler, e.g. "
                             "tcp://10.0.0.5:8786 (also S2PIPE_SCHEDULER); workers must reach the "
                             "inputs and outputs by the same paths.")(f)


def cluster_runner(scheduler: str | None, workers: int | None) -> Any:
    """The runner of ``--scheduler``/``--workers`` for this command (closed with it), or None
    to run in this process. ``--workers`` wins over a scheduler from S2PIPE_SCHEDULER."""
    ctx = click.get_current_context()
    if scheduler and workers:
        if ctx.get_parameter_source("scheduler") != click.core.ParameterSource.ENVIRONMENT:
            raise click.UsageError("give --scheduler or --workers, not both")
        scheduler = None
    if not scheduler and not workers:
        return None
    from s2pipe.cluster.runner import open_runner  # imports distributed, which sets its log levels

    state = _state()  # Dask's own log lines from -vv on
    level = logging.ERROR if state.quiet else (logging.INFO if state.verbose >= 2 else logging.WARNING)
    logging.getLogger("distributed").setLevel(level)

    runner = ctx.with_resource(open_runner(scheduler, workers))
    if runner.dashboard_link and not state.quiet:
        click.echo(f"Dask dashboard: {runner.dashboard_link}", err=True)
    return runner


def exit_on_failures(failures: list[Any], total: int, what: str) -> None:
    """After the report: one ``Error: TASK: message`` line per failed task (a traceback too
    for a bug), and exit status 1 if there was any."""
    if not failures:
        return
    for f in failures:
        if f.traceback:
            log.error("%s failed:\n%s", f.task, f.traceback.rstrip())
        click.echo(f"Error: {f.line()}", err=True)
    click.echo(f"Error: {len(failures)} of {total} {what} failed; the others are done", err=True)
    click.get_current_context().exit(1)


def label_options(f: Callable) -> Callable:
    """How label vectors are read and rasterised: the same options for prepare and evaluate."""
    for opt in reversed([
        click.option("--layer", help="Layer of a multi-layer label file."),
        click.option("--class-field", help="Vector attribute holding the class (default: class, class_id or code)."),
        click.option("--class-map", type=ClassMapType(),
                     help=f"A preset ({', '.join(CLASS_PRESETS)}: CORINE level-3 or Urban Atlas codes) "
                          "or a CSV/JSON file mapping source values or names to classes 1..8, 0 to drop "
                          "(unmapped features are dropped and counted; also recodes a raster reference)."),
        click.option("--all-touched", is_flag=True,
                     help="Label every pixel a polygon touches (default: pixel centres)."),
    ]):
        f = opt(f)
    return f


# ---------------------------------------------------------------------- the group
@click.group(cls=S2PipeGroup, context_settings={"help_option_names": ["-h", "--help"],
                                                 "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="s2pipe")
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-vv for debug); shows tracebacks.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr; no progress bars.")
@click.option("--threads", type=click.IntRange(1), metavar="N",
              help="Compute threads of torch, ONNX Runtime and GDAL (or S2PIPE_THREADS) "
                   "[default: OMP_NUM_THREADS, else the CPUs this process may use: affinity "
                   "and cgroup quota].")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool, threads: int | None) -> None:
    """s2pipe: Sentinel-2 L2A scenes to land-cover maps.

    \b
    s2pipe synth demo/                                  # a synthetic L2A scene + labels
    s2pipe prepare S2B_MSIL2A_...SAFE --labels landcover.gpkg -o tiles/
    s2pipe train tiles/ -o model/
    s2pipe predict S2B_MSIL2A_...SAFE --model model/ -o landcover.tif
    """
    ctx.obj = _State(verbose, quiet)
    from s2pipe.resources import set_threads  # stdlib only

    set_threads(threads)
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    logging.basicConfig(stream=sys.stderr, level=level, format="%(levelname)s: %(message)s", force=True)
    logging.getLogger("rasterio").setLevel(max(level, logging.WARNING))
    # urllib3 warns of every retry of a busy catalogue; the one line of a final failure says it all
    logging.getLogger("urllib3").setLevel(level if verbose else logging.ERROR)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="s2pipe")


# ------------------------------------------------------------------- commands
# Each command: parse and validate options, make one library call, report the result.

@cli.command()
@click.argument("prediction", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--labels", "reference", required=True, type=click.Path(exists=True, path_type=Path),
              help="Reference: a label raster (.tif, 0 = unlabelled) or vectors in any OGR format.")
@click.option("-o", "--output", "report_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Report folder to create (metrics.json, metrics.md, metrics.csv, confusion.png).")
@label_options
@click.option("--split-from", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A prepare output folder: only pixels of its test tiles count.")
@click.option("--area-adjusted", is_flag=True,
              help="Add area-adjusted accuracy and class areas with 95% CIs (Olofsson et al. 2014).")
@click.option("--before-field", help="Change maps: the reference's field of the earlier date's class "
                                     "[default: ref_before, as s2pipe sample writes].")
@click.option("--after-field", help="Change maps: the field of the later date's class [default: ref_after].")
@overwrite_option
@json_option
def evaluate(prediction: Path, reference: Path, report_dir: Path, layer: str | None,
             class_field: str | None, class_map: Path | str | None, all_touched: bool,
             split_from: Path | None, area_adjusted: bool, before_field: str | None, after_field: str | None,
             overwrite: bool, as_json: bool) -> None:
    """Accuracy of a land-cover map, or of a change map, against reference labels.

    Class maps: only pixels labelled in the reference and mapped (not 0) count. Prints
    overall accuracy, kappa, per-class precision/recall/F1/IoU and the confusion matrix.
    Change maps (s2pipe change): reference points or polygons with the classes of both
    dates; prints change/no-change accuracy, each transition's user's and producer's
    accuracy and its area-adjusted hectares with 95% confidence intervals, using the
    strata and weights of points drawn by 's2pipe sample'. See docs/commands/change.md.

    \b
    s2pipe evaluate landcover.tif --labels landcover.gpkg --split-from tiles/ -o report/
    s2pipe evaluate change.tif --labels points_labelled.gpkg -o change_accuracy/
    """
    from s2pipe.evaluation.evaluate import evaluate_map

    result = evaluate_map(prediction, reference, report_dir, layer=layer, class_field=class_field,
                          class_map=class_map, all_touched=all_touched, split_from=split_from,
                          area_adjusted=area_adjusted, before_field=before_field, after_field=after_field,
                          overwrite=overwrite)
    report(result, as_json, result.files["metrics_md"].read_text() + f"\nReport: {result.report_dir}")


from s2pipe.raster.choices import QUICKLOOK_KINDS, QuicklookKind  # noqa: E402  (plain data; valid values live once)


def _png_path(ctx: click.Context, param: click.Parameter, value: Path) -> Path:
    if value.suffix.lower() != ".png":
        raise click.BadParameter(f"{value} must end in .png", ctx, param)
    return value


@cli.command()
@click.argument("image", type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--output", "out_png", required=True, type=click.Path(dir_okay=False, path_type=Path),
              callback=_png_path, help="PNG file to write.")
@click.option("--kind", type=click.Choice(QUICKLOOK_KINDS), default="auto", show_default=True,
              help="classes: a class map with its legend; rgb: a 12-band stack in true colour (B04/B03/B02).")
@click.option("--max-size", type=click.IntRange(16, 20000), default=1500, show_default=True,
              help="Longest side of the image in pixels; the raster is read decimated to fit.")
@click.option("--title", help="Legend title of a class map.")
@overwrite_option
@json_option
def quicklook(image: Path, out_png: Path, kind: QuicklookKind, max_size: int, title: str | None,
              overwrite: bool, as_json: bool) -> None:
    """A PNG quick-look of a class map (legend colours and legend), a 12-band stack, or a
    Sentinel-2 product (SAFE, zipped SAFE, STAC Item) in true colour, read decimated.

    \b
    s2pipe quicklook landcover.tif -o landcover.png
    s2pipe quicklook S2B_MSIL2A_...SAFE -o scene.png
    """
    from s2pipe.sentinel2.quicklook import is_product, render_product_quicklook

    if is_product(image):
        if kind == "classes":
            raise click.UsageError(f"{image} is a Sentinel-2 product, drawn in true colour; leave out --kind classes")
        result = render_product_quicklook(image, out_png, max_size=max_size, overwrite=overwrite)
    else:
        from s2pipe.raster.quicklook import render_quicklook

        result = render_quicklook(image, out_png, kind=kind, max_size=max_size, title=title, overwrite=overwrite)
    report(result, as_json, str(result.path))


from s2pipe.raster.choices import DEFAULT_MIN_AREA_HA, VECTOR_FORMATS  # noqa: E402  (plain data)


def _vector_path(ctx: click.Context, param: click.Parameter, value: Path) -> Path:
    if value.suffix.lower() not in VECTOR_FORMATS:
        raise click.BadParameter(f"{value}: the extension names the format; use one of "
                                 f"{', '.join(VECTOR_FORMATS)}", ctx, param)
    return value


@cli.command()
@click.argument("map_path", metavar="MAP", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              callback=_vector_path,
              help="Vector file: .gpkg (GeoPackage), .fgb (FlatGeobuf), .parquet (GeoParquet).")
@click.option("--min-area", "min_area_ha", type=click.FloatRange(0), default=DEFAULT_MIN_AREA_HA,
              show_default=True, help="Minimum mapping unit in hectares: smaller patches merge into their "
                                      "largest neighbour (0: keep every pixel).")
@click.option("--simplify", "simplify_m", type=click.FloatRange(0), default=0.0, show_default=True,
              help="Simplify borders by this tolerance in metres, keeping them shared "
                   "(0: exact pixel edges).")
@click.option("--by-class", is_flag=True, help="One GeoPackage layer per class instead of one layer.")
@overwrite_option
@json_option
def vectorize(map_path: Path, out_path: Path, min_area_ha: float, simplify_m: float, by_class: bool,
              overwrite: bool, as_json: bool) -> None:
    """Polygons of a class map for GIS work, with fields class, name and area_ha.

    Patches smaller than --min-area (4-connected pixels of one class) are merged into
    their largest neighbour first; polygons keep the map's CRS and share their borders
    (no gaps, no overlaps). No data (0) is left out. See docs/commands/vectorize.md.

    \b
    s2pipe vectorize landcover.tif -o landcover.gpkg --min-area 0.5 --simplify 5
    """
    if by_class and VECTOR_FORMATS[out_path.suffix.lower()][1] is False:
        raise click.BadParameter("--by-class needs a GeoPackage (.gpkg) output", param_hint="'--by-class'")
    from s2pipe.raster.vectorize import vectorize_map

    result = vectorize_map(map_path, out_path, min_area_ha=min_area_ha, simplify_m=simplify_m,
                           by_class=by_class, overwrite=overwrite,
                           progress=progress(None, "vectorize", unit="polygon"))
    lines = [f"{c.value:3d} {c.name:45s} {c.polygons:8d} polygons {c.area_ha:12.2f} ha"
             for c in result.classes]
    report(result, as_json, "\n".join([*lines, f"{result.polygons} polygons, {result.area_ha:.2f} ha "
                                        f"(minimum {result.min_pixels} px) in {result.seconds:.1f} s",
                                        str(result.output)]))


from s2pipe.prediction.options import (  # noqa: E402  (plain data; valid values live once)
    DEFAULT_CALIBRATION_TILES,
    DEFAULT_MIN_AGREEMENT,
    PRECISION_CHOICES,
    TTA_CHOICES,
    PredictOptions,
)


@cli.command()
@click.argument("scenes", nargs=-1, required=True, type=ProductType())
@click.option("--model", "model_path", required=True, type=click.Path(exists=True, path_type=Path),
              help="The folder 's2pipe train' wrote (its fastest model that passed: best.int8.onnx "
                   "on the CPU, else best.pt), a checkpoint (.pt), or an ONNX model from 's2pipe export'.")
@click.option("-o", "--output", "out", required=True, type=ProductType(must_exist=False), metavar="PATH",
              help="Map GeoTIFF to write; with several scenes a folder for <product name>.tif. "
                   "May be an s3://... URL (written locally, uploaded when complete).")
@click.option("--overlap", type=click.IntRange(0), default=64, show_default=True,
              help="Pixels shared by neighbouring windows, blended smoothly (at most half a tile).")
@click.option("--batch-size", type=click.IntRange(1), default=4, show_default=True,
              help="Windows per forward pass.")
@device_option
@click.option("--tta", type=click.Choice(TTA_CHOICES), default="none", show_default=True,
              help="Test-time augmentation: average over flips, or all 8 flips/rotations (d4).")
@click.option("--precision", type=click.Choice(PRECISION_CHOICES),
              help="With a model folder: fp32 runs best.pt in torch (the exact path), int8 its int8 "
                   "model. With a file: check it is fp32 or int8 [default: the fastest that passed].")
@click.option("--mask-clouds", is_flag=True,
              help="Map pixels the SCL flags as cloud, cirrus, cloud shadow or defective as no data (0).")
@click.option("--probabilities", type=ProductType(must_exist=False),
              help="Also write the winning class's probability (uint8, 0-255) here.")
@click.option("--probabilities-all", is_flag=True,
              help="With --probabilities: one band per class instead of the winning one.")
@trust_pixels_option
@cluster_options
@stac_option
@overwrite_option
@json_option
def predict(scenes: tuple[Path, ...], model_path: Path, out: Path, overlap: int, batch_size: int,
            device: str, tta: str, precision: str | None, mask_clouds: bool, probabilities: Path | None,
            probabilities_all: bool, trust_pixels: bool, scheduler: str | None, local_workers: int | None,
            stac: bool, overwrite: bool, as_json: bool) -> None:
    """Seamless land-cover map of whole scenes (SAFE folder, zipped SAFE, STAC Item or 12-band stack).

    Writes a Cloud-Optimized GeoTIFF on the scene's 10 m grid: 0 = no data, 1..8 the
    classes, with the legend's colour table and class names. MODEL is a .pt checkpoint
    (torch) or an .onnx model from 's2pipe export' (ONNX Runtime, CPU; int8 is fastest);
    a folder from 's2pipe train' runs its int8 model on the CPU where it passed its check
    against fp32, else best.pt (which one is said on stderr).
    With --scheduler or --workers each scene is one task on a Dask cluster: a scene that
    fails is listed (exit 1) while the others are mapped.

    \b
    s2pipe predict S2B_MSIL2A_...SAFE --model model/ -o landcover.tif
    s2pipe predict scenes/*.SAFE --model model/ -o maps/ --workers 4
    """
    from s2pipe.prediction.predict import predict_scenes

    if model_path.is_dir():
        from s2pipe.export.choice import choose_model
        from s2pipe.model.device import resolve_device

        choice = choose_model(model_path, precision=precision, device=str(resolve_device(device)))
        model_path = choice.path
        if not _state().quiet:
            click.echo(f"predict: {model_path}: {choice.why}", err=True)

    local_for_stac(stac, out, probabilities)
    options = build(PredictOptions, overlap=overlap, batch_size=batch_size, device=device, tta=tta,
                    precision=precision, mask_clouds=mask_clouds, probabilities=probabilities,
                    probabilities_all=probabilities_all, trust_pixels=trust_pixels, overwrite=overwrite)
    runner = cluster_runner(scheduler, local_workers)
    on_total, tick = progress_later("predict", "window" if runner is None else "scene")
    run = predict_scenes(scenes, model_path, out, options, progress=tick, on_total=on_total, runner=runner)
    items: list[str] = []
    if stac:
        from s2pipe.catalog.publish import read_model_contract

        contract = read_model_contract(model_path)
        maps = [p for r in run.results for p in (r.output, r.probabilities) if p is not None]
        items = describe_maps(maps, model=contract, overwrite=overwrite)
    report({**jsonable(run), "stac_items": items} if stac else run, as_json,
           "\n".join([*(r.summary() for r in run.results), *(f"STAC Item: {i}" for i in items)]))
    exit_on_failures(run.failures, len(scenes), "scenes")


def _onnx_path(ctx: click.Context, param: click.Parameter, value: Path) -> Path:
    if value.suffix.lower() != ".onnx":
        raise click.BadParameter(f"{value} must end in .onnx", ctx, param)
    return value


@cli.command()
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              callback=_onnx_path, help="ONNX model to write (.onnx).")
@click.option("--precision", type=click.Choice(PRECISION_CHOICES), default="fp32", show_default=True,
              help="fp32, or int8: statically quantised, calibrated on training tiles (needs --tiles).")
@click.option("--tiles", "tiles_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="int8: the prepare output the model was trained on; its train tiles calibrate "
                   "the model, its val tiles check it.")
@click.option("--calibration-tiles", type=click.IntRange(1), default=DEFAULT_CALIBRATION_TILES,
              show_default=True,
              help="int8: number of train tiles to calibrate on (drawn with --seed).")
@click.option("--min-agreement", type=click.FloatRange(0, 1), default=DEFAULT_MIN_AGREEMENT,
              show_default=True,
              help="int8: refuse the model if its classes agree with fp32 on less than this "
                   "fraction of the val tiles' pixels (0 accepts any).")
@seed_option
@overwrite_option
@json_option
def export(checkpoint: Path, out: Path, precision: str, tiles_dir: Path | None, calibration_tiles: int,
           min_agreement: float, seed: int, overwrite: bool, as_json: bool) -> None:
    """Export a checkpoint as an ONNX model for ONNX Runtime, fp32 or int8.

    The model takes (batch, 12, tile, tile) normalised bands and gives class logits; its
    metadata carries the checkpoint's bands, legend, normalisation, tile size and
    radiometry, so 'predict --model model.onnx' checks scenes as with the .pt. int8:
    calibrated once on training tiles, and refused if it maps other classes than fp32 on
    more than 1% of the validation pixels.

    \b
    s2pipe export model/best.pt --precision int8 --tiles tiles/ -o model/best.int8.onnx
    """
    from s2pipe.export.engine import ExportOptions, export_model

    options = build(ExportOptions, precision=precision, tiles_dir=tiles_dir, calibration_tiles=calibration_tiles,
                    seed=seed, min_agreement=min_agreement, overwrite=overwrite)
    result = export_model(checkpoint, out, options, progress=progress(None, "export", unit="tile"))
    report(result, as_json, result.summary())


from s2pipe.model.presets import ARCHITECTURES, PRESET_NAMES  # noqa: E402  (plain data, no torch)
from s2pipe.training.options import CLASS_WEIGHTS, SCHEDULES, ClassWeights, Schedule, TrainOptions  # noqa: E402  (plain data; valid values live once)


def _num(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _deprecated_workers(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    if value is not None:
        click.echo("Warning: train --workers is deprecated (it meant DataLoader workers, while --workers "
                   "of predict, prepare and mosaic means Dask processes); use --loader-workers", err=True)
    return value


@cli.command()
@click.argument("tiles_dirs", metavar="[TILES_DIR]...", nargs=-1,
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", "model_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Run folder to create (best.pt, last.pt, history.csv, metrics.json, curves.png, samples.png).")
@click.option("--images-dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The study's layout: folder of 12-band image tiles (instead of TILES_DIR).")
@click.option("--labels-dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The study's layout: folder of label tiles paired with --images-dir by file name.")
@click.option("--train-size", type=click.FloatRange(0, 1, min_open=True), default=0.8, show_default=True,
              help="Study layout: fraction of tiles to train on; the rest is halved into val and test.")
@click.option("--num-samples", type=click.IntRange(1), help="Use a random subset of this many tiles.")
@click.option("--epochs", type=click.IntRange(1), default=60, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True)
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=TrainOptions.lr, show_default=True,
              help="Adam learning rate: the peak of --schedule onecycle, the start of plateau.")
@click.option("--schedule", type=click.Choice(SCHEDULES), default=TrainOptions.schedule, show_default=True,
              help="Learning rate: onecycle (warm-up to --lr, then annealed to ~0 by the last epoch) "
                   "or plateau (x0.1 after 5 epochs without val mIoU gain, the study's).")
@click.option("--filters", type=click.IntRange(1), default=32, show_default=True,
              help="Filters of the first U-Net block (doubled at each of the 4 levels).")
@click.option("--class-weights", type=click.Choice(CLASS_WEIGHTS), default="none", show_default=True,
              help="Loss weights: none, or inverse pixel frequency in the training split.")
@click.option("--patience", type=click.IntRange(1), default=20, show_default=True,
              help="Early stopping: epochs without val mIoU gain; the best weights are kept.")
@click.option("--augment/--no-augment", default=True, show_default=True,
              help="Random flips and 90-degree rotations of the training tiles.")
@click.option("--max-minutes", type=click.FloatRange(0, min_open=True),
              help="Time budget: no epoch is started that would end after it.")
@click.option("--loader-workers", type=click.IntRange(0), metavar="N",
              help="DataLoader worker processes [default: 0 on CPU, 4 on CUDA].")
@click.option("--workers", "old_workers", type=click.IntRange(0), hidden=True, callback=_deprecated_workers,
              help="Deprecated spelling of --loader-workers.")
@click.option("--resume", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Continue an interrupted run from its MODEL_DIR/last.pt (same options and seed).")
@click.option("--save-samples/--no-save-samples", "--plot-images/--no-plot-images", default=True,
              show_default=True, help="Write samples.png (RGB, label, prediction of a few tiles).")
@click.option("--save-training-summary", is_flag=True, help="Also write training_summary.txt.")
@click.option("--save-model/--no-save-model", default=True, show_default=True,
              help="Write best.pt and last.pt.")
@click.option("--int8/--no-int8", default=True, show_default=True,
              help="Also write best.int8.onnx (fast CPU model): calibrated on the train tiles, kept only "
                   "if its classes agree with fp32 on >= 99% of the val pixels and it runs faster "
                   "than fp32 ONNX (int8.json says); "
                   "on the first TILES_DIR's tiles.")
@click.option("--encoder", type=click.Choice(ARCHITECTURES),
              help="Network: 'unet' (the study's U-Net, the default) or a U-Net on this backbone.")
@click.option("--encoder-weights", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Start the --encoder backbone from this local state dict (timm/torchvision keys).")
@click.option("--encoder-preset", type=click.Choice(PRESET_NAMES),
              help="What --encoder-weights holds: its band order and normalisation.")
@click.option("--encoder-bands", metavar="LIST",
              help="Band order of the --encoder-weights first convolution, e.g. B04,B03,B02.")
@click.option("--encoder-lr", type=click.FloatRange(0, min_open=True),
              help="Encoder learning rate [default: --lr / 10 when starting from weights, else --lr].")
@click.option("--freeze-encoder", type=click.IntRange(0), default=0, show_default=True, metavar="EPOCHS",
              help="Train the decoder alone for the first EPOCHS epochs.")
@click.option("--init", "init", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Start from this s2pipe checkpoint (same bands; another legend re-initialises the head).")
@seed_option
@device_option
@overwrite_option
@json_option
def train(tiles_dirs: tuple[Path, ...], model_dir: Path, images_dir: Path | None, labels_dir: Path | None,
          train_size: float, num_samples: int | None, epochs: int, batch_size: int, lr: float,
          schedule: Schedule, filters: int, class_weights: ClassWeights, patience: int, augment: bool,
          max_minutes: float | None,
          loader_workers: int | None, old_workers: int | None, resume: Path | None, save_samples: bool,
          save_training_summary: bool, save_model: bool, int8: bool, encoder: str | None,
          encoder_weights: Path | None, encoder_preset: str | None, encoder_bands: str | None,
          encoder_lr: float | None, freeze_encoder: int, init: Path | None, seed: int, device: str,
          overwrite: bool, as_json: bool) -> None:
    """Train the U-Net on tiles from 'prepare' (or the study's images/labels folders).

    Several TILES_DIRs are trained on as one set (same bands, legend, tile size and
    radiometry). Loss and metrics use labelled pixels only. One line per epoch goes to stderr;
    metrics.json holds train/val/test figures of the best weights. Under torchrun the
    run is data-parallel (DDP), on one node or several (BatchNorm synchronised across GPUs),
    and rank 0 alone writes and prints the result.

    \b
    s2pipe train tiles/ -o model/ --epochs 60 --max-minutes 30
    s2pipe train tiles_wroclaw/ tiles_brzeg/ -o model/
    s2pipe train tiles/ -o model/ --encoder resnet50 --encoder-preset ssl4eo-s12 \\
        --encoder-weights resnet50_sentinel2_all_moco.pth --freeze-encoder 5
    s2pipe train tiles_brzeg/ -o model_brzeg/ --init model_wroclaw/best.pt
    torchrun --nnodes 2 --nproc-per-node 4 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \\
        cli.py train tiles/ -o model/
    """
    if (not tiles_dirs) == (images_dir is None and labels_dir is None):
        raise click.UsageError("give either TILES_DIR or both --images-dir and --labels-dir")
    if not tiles_dirs and (images_dir is None or labels_dir is None):
        raise click.UsageError("--images-dir and --labels-dir go together")
    from s2pipe.training.train import train_model

    if not _state().quiet:  # one progress line per epoch, even without -v
        logging.getLogger("s2pipe.training.train").setLevel(min(logging.INFO, log.getEffectiveLevel()))
    options = TrainOptions(epochs=epochs, batch_size=batch_size, lr=lr, schedule=schedule, filters=filters,
                           class_weights=class_weights, patience=patience, augment=augment, seed=seed,
                           device=device, workers=loader_workers if loader_workers is not None else old_workers,
                           max_minutes=max_minutes, train_size=train_size,
                           num_samples=num_samples, save_model=save_model, save_samples=save_samples,
                           save_summary=save_training_summary, encoder=encoder,
                           encoder_weights=None if encoder_weights is None else str(encoder_weights),
                           encoder_preset=encoder_preset, encoder_bands=encoder_bands,
                           encoder_lr=encoder_lr, freeze_encoder=freeze_encoder,
                           init=None if init is None else str(init))
    result = train_model(model_dir, tiles_dir=list(tiles_dirs) or None, images_dir=images_dir, labels_dir=labels_dir,
                         options=options, resume=resume, overwrite=overwrite,
                         progress=progress(None, "training", "batch"))
    if result.rank != 0:  # under torchrun: rank 0 reports for all
        return
    fast = None
    if int8 and save_model and tiles_dirs and result.best_checkpoint is not None:
        from s2pipe.export.beside import write_int8_beside

        fast = write_int8_beside(model_dir, tiles_dirs[0], seed=seed)
        if not _state().quiet:
            click.echo(f"train: {fast.summary()}", err=True)
    split, score = result.headline()
    shown = result if fast is None else {**jsonable(result), "int8": jsonable(fast)}
    report(shown, as_json, f"best epoch {result.best_epoch} of {result.epochs_run} ({result.stop_reason}); "
                           f"{split} OA {_num(score.overall_accuracy)} mIoU {_num(score.miou)}\n"
                           f"{result.best_checkpoint or result.model_dir}")


from s2pipe.sentinel2.facts import DEFAULT_SCL_MASK, RESAMPLING_NAMES, SCL_CLASSES  # noqa: E402  (stdlib only)


def _info_text(info: Any) -> str:
    lines = [f"Product:        {info.name}",
             f"Level:          {info.level} ({info.product_type}), baseline {info.baseline}",
             f"Tile:           {info.tile}   sensing {info.sensing_time}   {info.spacecraft}",
             f"CRS:            EPSG:{info.epsg}",
             f"10 m grid:      {info.width} x {info.height} px, transform {info.transform}",
             f"Quantification: {info.quantification:g}  (s2pipe output: DN = 10000 * reflectance)",
             "Offsets added:  " + " ".join(f"{b}={v:+d}" for b, v in info.offsets.items())]
    if info.radiometry_metadata.get("source"):
        lines.append(f"Offset source:  {info.radiometry_metadata['source']}")
    for band, path in info.band_files.items():
        state = "MISSING" if band in info.missing_bands else "ok"
        asset = f"  asset {info.assets[band]}" if band in info.assets else ""
        coarser = "  coarser than native: resampled" if band in info.coarser_bands else ""
        lines.append(f"  {band:4s} {state:8s} {path}{asset}{coarser}")
    scl_asset = f"  asset {info.assets['SCL']}" if "SCL" in info.assets else ""
    lines.append(f"SCL:            {info.scl_file or 'MISSING (no cloud masking)'}{scl_asset}")
    if info.missing_bands:
        lines.append(f"Missing bands {', '.join(info.missing_bands)}: prepare/predict will refuse "
                     "this product.")
    return "\n".join(lines)


@cli.command()
@click.argument("product", type=ProductType())
@json_option
def info(product: Path, as_json: bool) -> None:
    """What s2pipe reads from a Sentinel-2 L2A product, a STAC Item of one, or a prepare --stack GeoTIFF.

    Level, baseline, tile, sensing time, EPSG, the 10 m grid, quantification value, the
    offset s2pipe adds to each band, and whether each of the 12 band files and the SCL
    exist. Exit 1 only when the metadata cannot be read or the product is not L2A.

    \b
    s2pipe info S2B_MSIL2A_20180607T095029_N0208_R079_T33UYS_20180607T130225.SAFE
    s2pipe info S2B_33UYS_20180607_0_L2A.json
    """
    from s2pipe.sentinel2.reader import product_info

    result = product_info(product)
    report(result, as_json, _info_text(result))


def _counted(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} x{v}" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _parse_split(ctx: click.Context, param: click.Parameter, value: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(v) for v in value.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or any(p < 0 for p in parts) or sum(parts) <= 0:
        raise click.BadParameter(f"{value!r}: give three fractions train,val,test, e.g. 0.8,0.1,0.1",
                                 ctx, param)
    return parts


def _parse_mask(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...]:
    if value is None:
        return DEFAULT_SCL_MASK
    if value.strip().lower() == "none":
        return ()
    names = {v: k for k, v in SCL_CLASSES.items()}
    out = []
    for item in value.split(","):
        item = item.strip().lower()
        code = int(item) if item.isdigit() else names.get(item, -1)
        if code not in SCL_CLASSES:
            raise click.BadParameter(
                f"{item!r} is no SCL class; use numbers 0..11 or names "
                f"{', '.join(SCL_CLASSES.values())}, or 'none'", ctx, param)
        out.append(code)
    return tuple(sorted(set(out)))


@cli.command()
@click.argument("products", nargs=-1, type=ProductType())
@click.option("--products", "product_list", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A text file of products, one path per line (relative to the file; # comments).")
@click.option("--labels", required=True, type=click.Path(exists=True, path_type=Path),
              help="Label polygons in any OGR format (GeoPackage, Shapefile, GeoJSON...), any CRS.")
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to create: images/, labels/, tiles.gpkg, prepare.json.")
@label_options
@click.option("--resampling", type=click.Choice(RESAMPLING_NAMES), default="bilinear", show_default=True,
              help="How 20 m and 60 m bands are resampled onto the 10 m grid.")
@click.option("--mask", "mask_scl", callback=_parse_mask, metavar="CLASSES",
              help="SCL classes made no data (numbers or names, comma-separated, or 'none'). "
                   "Default: no_data, saturated_defective, cloud_shadow, cloud_medium, cloud_high, thin_cirrus.")
@click.option("--tile-size", type=click.IntRange(16), default=256, show_default=True,
              help="Tile side in pixels (multiple of 16).")
@click.option("--stride", type=click.IntRange(1), help="Step between tiles in pixels (default: the tile size).")
@click.option("--min-labelled", type=click.FloatRange(0, 1), default=0.05, show_default=True,
              help="Smallest fraction of labelled pixels for a tile to be written.")
@click.option("--max-nodata", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Largest fraction of no-data pixels for a tile to be written.")
@click.option("--split", default="0.8,0.1,0.1", show_default=True, callback=_parse_split,
              help="Train,val,test fractions, dealt out by spatial blocks of tiles.")
@click.option("--block-size", type=click.IntRange(16), help="Side of a split block in pixels "
              "(default: 4, 3, 2 or 1 tiles, the largest giving at least 10 blocks).")
@seed_option
@click.option("--stack", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the full 10 m 12-band stack here (a GeoTIFF predict can read).")
@trust_pixels_option
@cluster_options
@overwrite_option
@json_option
def prepare(products: tuple[Path, ...], product_list: Path | None, labels: Path, out_dir: Path,
            layer: str | None, class_field: str | None, class_map: Path | str | None, all_touched: bool,
            resampling: str, mask_scl: tuple[int, ...], tile_size: int, stride: int | None,
            min_labelled: float, max_nodata: float, split: tuple[float, float, float],
            block_size: int | None, seed: int, stack: Path | None, trust_pixels: bool, scheduler: str | None,
            local_workers: int | None, overwrite: bool, as_json: bool) -> None:
    """Cut Sentinel-2 L2A products and label polygons into labelled training tiles.

    PRODUCTS are .SAFE folders, zipped SAFEs (read in place), MTD_MSIL2A.xml files or STAC
    Items (.json) of Earth Search, the Planetary Computer or the Copernicus Data Space, of
    any tiles, UTM zones, dates and baselines. The 12 bands (B01..B12 without B10) are
    resampled to 10 m in each product's own CRS and harmonised to DN = 10000 * reflectance
    whatever the processing baseline; SCL-masked pixels are no data (0) and unlabelled.
    The split is dealt by blocks of ground shared by all products, so the same ground is
    never in two splits. Writes OUT/images/<id>.tif, OUT/labels/<id>.tif, OUT/tiles.gpkg
    and OUT/prepare.json (products, splits, counts, provenance). With --scheduler or
    --workers each product is a task on a Dask cluster (in each of the two passes).

    \b
    s2pipe prepare S2B_MSIL2A_...SAFE --labels landcover.gpkg -o tiles/
    s2pipe prepare --products region.txt --labels ua.gpkg --class-map urban-atlas -o tiles/
    s2pipe prepare --products region.txt --labels ua.gpkg -o tiles/ --workers 4
    """
    from s2pipe.sentinel2.reader import ReadOptions, read_product_list
    from s2pipe.tiles.prepare import TileRule, prepare_tiles

    paths = [*products, *(read_product_list(product_list) if product_list else [])]
    if not paths:
        raise click.UsageError("give at least one PRODUCT or --products LIST")
    rule = build(TileRule, tile_size=tile_size, stride=stride, min_labelled=min_labelled, max_nodata=max_nodata,
                 split=split, block_size=block_size, seed=seed, all_touched=all_touched)
    runner = cluster_runner(scheduler, local_workers)
    read = build(ReadOptions, resampling=resampling, mask_scl=mask_scl, trust_pixels=trust_pixels)
    result = prepare_tiles(paths, labels, out_dir, layer=layer, class_field=class_field,
                           class_map=class_map, read=read, rule=rule, stack=stack, overwrite=overwrite,
                           runner=runner,
                           progress=progress(None if runner is None else 2 * len(paths), "prepare",
                                             unit="tile row" if runner is None else "task"))
    splits = ", ".join(f"{v} {k}" for k, v in result.splits.items())
    lab = result.labels
    lines = [f"{result.out_dir}: {result.tiles} tiles ({splits}) from {len(result.products)} product(s)"]
    if len(result.products) > 1:
        lines += [f"  {p.key}: {p.tiles} tiles ({', '.join(f'{v} {k}' for k, v in p.splits.items())}), "
                  f"EPSG:{p.epsg}" for p in result.products]
    else:
        lines[0] += f": {result.product}"
    lines.append(f"labels: {lab.used} of {lab.features} features used ({lab.repaired} repaired, "
                 f"{lab.outside_scene} outside the scene, {lab.dropped_unmapped} unmapped, "
                 f"{lab.dropped_empty_or_not_polygon} empty or not polygons)")
    if lab.unmapped_counts:
        lines.append("  values not in the class map (features): " + _counted(lab.unmapped_counts))
    if lab.dropped_by_class_map:
        lines.append("  values the class map drops (features): " + _counted(lab.dropped_by_class_map))
    absent = {s: [k for k, v in c.items() if not v]
              for s, c in result.counts["class_pixels_by_split"].items() if result.splits.get(s)}
    lines += [f"the {s} split has no pixel of class(es) {', '.join(a)}" for s, a in absent.items() if a]
    report(result, as_json, "\n".join(lines))


@cli.command()
@click.argument("maps", metavar="MAP...", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", "out", required=True, type=ProductType(must_exist=False), metavar="PATH",
              help="Mosaic GeoTIFF (COG) to write; may be an s3://... URL (uploaded when complete).")
@click.option("--crs", help="Output CRS, e.g. EPSG:32633 [default: the first map's].")
@click.option("--resolution", type=click.FloatRange(0, min_open=True), default=10.0, show_default=True,
              help="Pixel size in metres.")
@click.option("--bounds", type=(float, float, float, float), metavar="W S E N",
              help="Output box in the output CRS [default: the union of the maps].")
@click.option("--clip", type=click.Path(exists=True, path_type=Path),
              help="Polygons (any OGR format, any CRS): their box, no data outside them.")
@click.option("--feather", type=click.IntRange(0), default=100, show_default=True,
              help="Pixels over which a map's weight rises from its edge and no data (clouds) to 1.")
@click.option("--sources", type=ProductType(must_exist=False),
              help="Also write which scene weighed most at each pixel, and how many were valid.")
@click.option("--probabilities", type=ProductType(must_exist=False),
              help="Also write the blended class probabilities (of probability inputs), e.g. for "
                   "'s2pipe change'.")
@cluster_options
@stac_option
@overwrite_option
@json_option
def mosaic(maps: tuple[Path, ...], out: Path, crs: str | None, resolution: float,
           bounds: tuple[float, float, float, float] | None, clip: Path | None, feather: int,
           sources: Path | None, probabilities: Path | None, scheduler: str | None, local_workers: int | None,
           stac: bool,
           overwrite: bool, as_json: bool) -> None:
    """Join per-scene maps of 'predict' into one seamless map on one grid.

    Give the probabilities of 'predict --probabilities P --probabilities-all': where
    scenes overlap, class probabilities are averaged with weights that fall off towards
    each scene's edge and no data (clouds), then decided, so borders leave no seam and
    clouds of one date are filled from the others; maps in other UTM zones are
    resampled (bilinear) first. With class maps only, each pixel takes the class of the
    scene it lies deepest inside (nearest resampling; classes are never averaged).
    With --scheduler or --workers, groups of 1024 px blocks are computed on a Dask
    cluster and written here in order.

    \b
    s2pipe mosaic probs/*.tif -o region.tif --crs EPSG:32633 --sources region_sources.tif
    """
    from s2pipe.mosaic.mosaic import mosaic_maps
    from s2pipe.mosaic.options import MosaicOptions

    local_for_stac(stac, out, sources)
    options = build(MosaicOptions, crs=crs, resolution=resolution, bounds=bounds, clip=clip, feather=feather,
                    sources=sources, probabilities=probabilities, overwrite=overwrite)
    runner = cluster_runner(scheduler, local_workers)
    on_total, tick = progress_later("mosaic", "block" if runner is None else "block group")
    result = mosaic_maps(maps, out, options, progress=tick, on_total=on_total, runner=runner)
    mapped = sum(result.class_pixels.values())
    items = describe_maps([result.output, *([sources] if sources else [])], overwrite=overwrite) if stac else []
    report({**jsonable(result), "stac_items": items} if stac else result, as_json,
           "\n".join([f"{result.output}: {result.width}x{result.height} px in {result.crs} from "
                      f"{len(result.scenes)} maps ({result.rule}), {mapped} px mapped, "
                      f"{result.nodata_pixels} no data; {result.seconds:.1f} s, peak "
                      f"{result.peak_rss_mb:.0f} MB", *(f"STAC Item: {i}" for i in items)]))


from s2pipe.change.options import DEFAULT_MIN_CONFIDENCE, DEFAULT_MMU_HA  # noqa: E402  (plain data)
from s2pipe.evaluation.allocation import ALLOCATIONS, Allocation  # noqa: E402  (numpy only)


@cli.command()
@click.argument("before", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("after", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              metavar="PATH", help="Change map (COG) to write, with its .qml and .aux.xml.")
@click.option("--report", "report_dir", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="Report folder (change.json, transitions.csv, change.md, charts) [default: <map>_report].")
@click.option("--min-confidence", type=click.FloatRange(0, 1),
              help=f"With probabilities of both dates: a pixel whose classes differ is change only where "
                   f"both dates are at least this sure, else uncertain (0: naive) [default: "
                   f"{DEFAULT_MIN_CONFIDENCE}].")
@click.option("--mmu", "mmu_ha", type=click.FloatRange(0), default=DEFAULT_MMU_HA, show_default=True,
              help="Minimum mapping unit of change in hectares: smaller change patches keep the earlier "
                   "class (0: keep every pixel).")
@click.option("--crs", help="Output CRS, e.g. EPSG:32633 [default: BEFORE's grid].")
@click.option("--resolution", type=click.FloatRange(0, min_open=True), help="Pixel size in metres [default: BEFORE's].")
@click.option("--bounds", type=(float, float, float, float), metavar="W S E N", help="Output box in the output CRS.")
@click.option("--clip", type=click.Path(exists=True, path_type=Path),
              help="Polygons (any OGR format, any CRS): their box, no data outside them.")
@stac_option
@overwrite_option
@json_option
def change(before: Path, after: Path, out: Path, report_dir: Path | None, min_confidence: float | None,
           mmu_ha: float, crs: str | None, resolution: float | None,
           bounds: tuple[float, float, float, float] | None, clip: Path | None, stac: bool, overwrite: bool,
           as_json: bool) -> None:
    """What changed between two maps of one legend, where, and how many hectares.

    BEFORE and AFTER are class maps or probabilities (predict --probabilities P
    --probabilities-all) of predict or mosaic, on any grids. Each pixel of the change
    map holds its from -> to transition, or its stable class; no data where either date
    has none (clouds). With probabilities a pixel counts as changed only where both
    dates are confident (else: uncertain), which removes most false change. Writes the
    transition matrix, gains, losses, net change and swap per class; for areas with
    confidence intervals use 'sample' and 'evaluate'. See docs/commands/change.md.

    \b
    s2pipe change probs_2018.tif probs_2024.tif -o change.tif
    """
    from s2pipe.change.compare import change_map
    from s2pipe.change.options import ChangeOptions

    options = build(ChangeOptions, crs=crs, resolution=resolution, bounds=bounds, clip=clip,
                    min_confidence=min_confidence, mmu_ha=mmu_ha, report=report_dir, overwrite=overwrite)
    on_total, tick = progress_later("change", "block")
    result = change_map(before, after, out, options, progress=tick, on_total=on_total)
    rule = f"confidence >= {result.min_confidence:g}" if result.min_confidence else "naive"
    items: list[str] = []
    if stac:  # derived from the two maps' own Items where they were published
        from s2pipe.catalog.publish import stac_item_path

        items = describe_maps([result.path], sources=[stac_item_path(p) for p in (before, after)
                                                      if stac_item_path(p).exists()], overwrite=overwrite)
    human = "\n".join([f"{result.path}: {result.width}x{result.height} px in {result.crs} ({rule}, "
                        f"MMU {result.mmu_ha:g} ha = {result.mmu_pixels} px)", result.summary.headline(),
                        f"report: {result.report_dir}; {result.seconds:.1f} s, peak {result.peak_rss_mb:.0f} MB",
                        *(f"STAC Item: {i}" for i in items)])
    report({**jsonable(result), "stac_items": items} if stac else result, as_json, human)


@cli.command()
@click.argument("map_path", metavar="MAP", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-n", "--points", "n", required=True, type=click.IntRange(1), help="Number of points to draw.")
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              metavar="PATH", help="GeoPackage (.gpkg) of the points, with empty reference fields to fill in.")
@click.option("--allocation", type=click.Choice(ALLOCATIONS), default="auto", show_default=True,
              help="Points per stratum: neyman (by area times the anticipated spread of change: the default "
                   "for change maps), minimum (at least --min-per-stratum each, the rest by area: the default "
                   "for class maps), proportional (by area) or equal.")
@click.option("--min-per-stratum", type=click.IntRange(2),
              help="With --allocation minimum: points in every stratum [default: min(50, N / (2 x strata))].")
@click.option("--buffer", type=click.IntRange(0), default=2, show_default=True,
              help="Change maps: stable pixels within this many pixels of change are strata of their own "
                   "(where omitted change lies); 0: none.")
@click.option("--extend", type=click.Path(dir_okay=False, path_type=Path), metavar="POINTS",
              help="An earlier sample of this map (labelled or not): keep its points and draw new ones among "
                   "the other pixels of each stratum, up to -n in all.")
@seed_option
@overwrite_option
@json_option
def sample(map_path: Path, n: int, out: Path, allocation: Allocation, min_per_stratum: int | None, buffer: int,
           extend: Path | None, seed: int, overwrite: bool, as_json: bool) -> None:
    """A stratified random sample of a map or change map, for an analyst to label.

    Strata are the map's classes, or a change map's transitions and stable classes;
    each point records its stratum, inclusion probability and weight (Olofsson et al.
    2014). Fill in ref_class (or ref_before and ref_after) and give the file to
    'evaluate'. See docs/commands/change.md.

    \b
    s2pipe sample change.tif -n 600 -o points.gpkg
    s2pipe sample change.tif -n 2000 --extend points.gpkg -o points2.gpkg --seed 1
    """
    from s2pipe.evaluation.sample import draw_sample

    result = draw_sample(map_path, n, out, allocation=allocation, min_per_stratum=min_per_stratum,
                         buffer=buffer, extend=extend, seed=seed, overwrite=overwrite)
    lines = [f"{s.points:6d} points  {s.area_ha:12.1f} ha  {s.name}" for s in result.strata]
    kept = f", {result.kept} of them kept from {extend}" if extend else ""
    report(result, as_json, "\n".join([*lines, f"{result.points} points in {len(result.strata)} strata "
                                       f"({result.allocation}{kept}): {result.path}; fill in "
                                       f"{', '.join(result.reference_fields)}"]))


def _parse_baseline(ctx: click.Context, param: click.Parameter, value: str) -> str:
    import re

    if not re.fullmatch(r"\d\d\.\d\d", value):
        raise click.BadParameter(f"{value!r}: give a processing baseline NN.NN, e.g. 02.08 or 05.09", ctx, param)
    return value


from s2pipe.sentinel2.facts import STAC_NAMINGS  # noqa: E402
from s2pipe.synth.defaults import DEFAULT_DATE, DEFAULT_EPSG, DEFAULT_ORIGIN  # noqa: E402
from s2pipe.synth.defaults import FORMATS as SYNTH_FORMATS  # noqa: E402  (plain data; defaults live once)


@cli.command()
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--size", type=click.IntRange(256, 10980), default=2560, show_default=True,
              help="Scene side in 10 m pixels (10980 = a full Sentinel-2 tile).")
@seed_option
@click.option("--baseline", default="02.08", show_default=True, callback=_parse_baseline, metavar="NN.NN",
              help="Processing baseline NN.NN; from 04.00 on DNs carry the +1000 offset (BOA_ADD_OFFSET).")
@click.option("--date", "day", type=click.DateTime(formats=["%Y-%m-%d"]), default=DEFAULT_DATE.isoformat(),
              show_default=True, metavar="YYYY-MM-DD",
              help="Sensing date: names, orbit and clouds follow it; the ground stays.")
@click.option("--origin", type=(float, float), default=DEFAULT_ORIGIN, show_default=True,
              metavar="X Y", help="Upper-left corner of the scene in the image CRS (metres); the tile id "
                                  "in the names is the MGRS square of the scene's centre.")
@click.option("--epsg", type=click.IntRange(1024), default=DEFAULT_EPSG, show_default=True,
              help="EPSG code of the image CRS (a projected CRS in metres, e.g. a UTM zone; "
                   "outside the UTM zones the tile id stays T33UYS).")
@click.option("--world", type=(float, float, float, float), default=None, metavar="W S E N",
              help="Box the ground is laid out in (metres in --world-epsg), containing the scene; "
                   "scenes with the same --seed and --world show the same ground where they overlap. "
                   "Default: the scene's own extent. Costs time in proportion to its area.")
@click.option("--world-epsg", type=click.IntRange(1024), default=None,
              help="EPSG code of the --world box (default: --epsg); a scene in another CRS samples "
                   "the world at its pixel centres.")
@click.option("--label-epsg", type=click.IntRange(1024), default=2180, show_default=True,
              help="EPSG code of the label GeoPackage.")
@click.option("--format", "product_format", type=click.Choice(SYNTH_FORMATS), default="safe", show_default=True,
              help="safe: a .SAFE folder of JPEG2000 bands; stac: a folder of COGs (one per band, native "
                   "resolution) and their STAC Item, as cloud catalogues serve them.")
@click.option("--stac-naming", type=click.Choice(STAC_NAMINGS), default="earth-search", show_default=True,
              help="With --format stac: asset keys and properties of Earth Search (blue, nir08, scl...) "
                   "or of the Planetary Computer (B02, B8A, SCL...).")
@click.option("--changes", type=click.IntRange(0), default=0, show_default=True,
              help="Turn the ground by change set N (urban growth, construction sites, felled forest, a new "
                   "water body) and write change_truth.tif and changes.gpkg; 0: the world as it is.")
@overwrite_option
@json_option
def synth(out_dir: Path, size: int, seed: int, baseline: str, day: datetime.datetime, origin: tuple[float, float],
          epsg: int, world: tuple[float, float, float, float] | None, world_epsg: int | None, label_epsg: int,
          product_format: str, stac_naming: str, changes: int, overwrite: bool, as_json: bool) -> None:
    """A synthetic Sentinel-2 L2A product with land-cover labels, for demos and tests.

    Writes into OUT_DIR a .SAFE folder laid out like a real one (JPEG2000 bands at
    10/20/60 m, MTD_MSIL2A.xml, MTD_TL.xml, manifest.safe; GDAL's SENTINEL2 driver reads
    it), landcover.gpkg (truth polygons of the central part of the scene, fields class
    and name) and truth.tif (the full-scene truth, 0 = no data). The same --seed gives
    the same ground in every --baseline and on every --date; scenes of a region given the
    same --seed and --world show the same ground where they overlap, and the clouds of
    one date agree across them.

    \b
    s2pipe synth demo/ --size 2560 --seed 0 --baseline 05.09
    s2pipe synth region/a-0617 --size 384 --date 2018-06-17 --world 699000 5694000 707000 5701000
    s2pipe synth cloud/ --format stac --stac-naming planetary-computer --baseline 05.09
    s2pipe synth y2024/ --size 1024 --date 2024-06-20 --changes 1   # the same ground, turned
    """
    from s2pipe.synth.product import synth_product

    result = synth_product(out_dir, size=size, seed=seed, baseline=baseline, date=day.date(), origin=origin,
                           epsg=epsg, world=world, world_epsg=world_epsg, label_epsg=label_epsg,
                           format=product_format, stac_naming=stac_naming,  # type: ignore[arg-type]
                           changes=changes, overwrite=overwrite, progress=progress(None, "synth", unit="file"))
    changed = f"\n{result.change_truth_path}\n{result.changes_path}" if result.change_truth_path else ""
    report(result, as_json, f"{result.safe_path}\n{result.labels_path} ({result.polygons} polygons)\n"
                            f"{result.truth_path}{changed}")


@cli.command()
@click.option("--aoi", "aoi", type=click.Path(exists=True, path_type=Path),
              help="The area: a vector file in any OGR format and CRS (all features united).")
@click.option("--layer", help="Layer of a multi-layer --aoi file.")
@click.option("--bbox", type=float, nargs=4, metavar="W S E N", help="The area as a lon/lat box instead of --aoi.")
@click.option("--dates", required=True, metavar="FIRST/LAST", help="Sensing days, e.g. 2018-06-01/2018-08-31.")
@click.option("--max-cloud", type=click.FloatRange(0, 100), help="Largest cloud cover of a scene, in %.")
@click.option("--catalog", default="earth-search", show_default=True, metavar="NAME|URL|PATH",
              help="earth-search, planetary-computer, cdse, a STAC API URL, or a local folder / catalog.json.")
@click.option("--collection", "collections", multiple=True,
              help="Collection(s) to search (default: the catalogue's Sentinel-2 L2A ones).")
@click.option("--per-tile", type=click.IntRange(1), metavar="N",
              help="Keep the N best scenes of each MGRS tile (least cloud over the area, else the scene's).")
@click.option("--target-date", type=click.DateTime(["%Y-%m-%d"]),
              help="Ties in cloud go to the date nearest this one (default: the middle of --dates).")
@click.option("--no-aoi-cloud", is_flag=True, help="Rank by the scenes' cloud cover; do not read their SCL.")
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write the chosen Items and products.txt into (without it: only the table).")
@click.option("--retries", type=click.IntRange(0), default=4, show_default=True,
              help="Retries of a request the catalogue refuses (HTTP 429, 5xx) or drops, waiting 1, 2, 4 ... s.")
@overwrite_option
@json_option
def search(aoi: Path | None, layer: str | None, bbox: tuple[float, ...] | None, dates: str, max_cloud: float | None,
           catalog: str, collections: tuple[str, ...], per_tile: int | None, target_date: datetime.datetime | None,
           no_aoi_cloud: bool, out_dir: Path | None, retries: int, overwrite: bool, as_json: bool) -> None:
    """Search a STAC catalogue for the Sentinel-2 L2A scenes of an area and a time span.

    Duplicates of a product keep the newest baseline, --per-tile keeps the best scenes of
    each tile, tiles that touch the area only where others cover it are dropped. The
    chosen Items and products.txt (for prepare --products, predict and the workflows) go
    into --output; a table of them is printed.

    \b
    s2pipe search --aoi wroclaw.gpkg --dates 2018-06-01/2018-08-31 --max-cloud 20 --per-tile 2 -o items/
    """
    from s2pipe.catalog.area import area_from_bbox, read_area
    from s2pipe.catalog.search import parse_dates, scenes_table, search_scenes

    if (aoi is None) == (bbox is None):
        raise click.UsageError("give the area as --aoi FILE or --bbox W S E N (one of them)")
    area = read_area(aoi, layer=layer) if aoi is not None else area_from_bbox(*bbox)  # type: ignore[misc]
    result = search_scenes(area, dates=parse_dates(dates), catalog=catalog, out_dir=out_dir, max_cloud=max_cloud,
                           per_tile=per_tile, target_date=target_date.date() if target_date else None,
                           collections=collections, cloud_over_aoi=not no_aoi_cloud, retries=retries,
                           overwrite=overwrite)
    report(result, as_json, scenes_table(result))


if __name__ == "__main__":
    main()
