"""The ``s2pipe`` command line: parse, call one library function, report.

Conventions shared by every command (see README): results on stdout (one JSON object
with ``--json``), logs and progress on stderr, exit 0 done / 1 failed / 2 usage, one-line
``Error: ...`` messages, existing outputs refused unless ``--overwrite``.
Heavy libraries (torch, rasterio, geopandas) are imported inside the commands so that
``--help`` stays instant.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable

import click

from s2pipe import __version__
from s2pipe.errors import S2PipeError

log = logging.getLogger("s2pipe")


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


def report(result: Any, as_json: bool, human: str) -> None:
    """Print the result: one JSON object with --json, else the human summary."""
    if as_json:
        click.echo(json.dumps(jsonable(result), indent=None, sort_keys=False))
    else:
        click.echo(human)


# ---------------------------------------------------------------- shared options
overwrite_option = click.option(
    "--overwrite", is_flag=True, help="Replace outputs that already exist (refused otherwise).")
json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON object describing the outputs on stdout.")
seed_option = click.option(
    "--seed", type=int, default=0, show_default=True, help="Random seed, for reproducible runs.")
device_option = click.option(
    "--device", default="auto", show_default=True,
    help="Torch device: auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps.")


# ---------------------------------------------------------------------- the group
@click.group(cls=S2PipeGroup, context_settings={"help_option_names": ["-h", "--help"],
                                                 "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="s2pipe")
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-vv for debug); shows tracebacks.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr; no progress bars.")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """s2pipe: Sentinel-2 L2A scenes to land-cover maps.

    \b
    s2pipe synth demo/                                  # a synthetic L2A scene + labels
    s2pipe prepare S2B_MSIL2A_...SAFE --labels landcover.gpkg -o tiles/
    s2pipe train tiles/ -o model/
    s2pipe predict S2B_MSIL2A_...SAFE --model model/best.pt -o landcover.tif
    """
    ctx.obj = _State(verbose, quiet)
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    logging.basicConfig(stream=sys.stderr, level=level, format="%(levelname)s: %(message)s", force=True)
    logging.getLogger("rasterio").setLevel(max(level, logging.WARNING))


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
@click.option("--layer", help="Layer of a multi-layer vector file.")
@click.option("--class-field", help="Vector attribute holding the class (default: class, class_id or code).")
@click.option("--class-map", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CSV or JSON mapping source values or names to classes 1..8 (vectors).")
@click.option("--all-touched", is_flag=True, help="Rasterise vectors with GDAL's all-touched rule.")
@click.option("--split-from", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A prepare output folder: only pixels of its test tiles count.")
@click.option("--area-adjusted", is_flag=True,
              help="Add area-adjusted accuracy and class areas with 95% CIs (Olofsson et al. 2014).")
@overwrite_option
@json_option
def evaluate(prediction: Path, reference: Path, report_dir: Path, layer: str | None,
             class_field: str | None, class_map: Path | None, all_touched: bool,
             split_from: Path | None, area_adjusted: bool, overwrite: bool, as_json: bool) -> None:
    """Accuracy of a land-cover map against reference labels.

    Only pixels labelled in the reference and mapped (not 0) count. Prints the table of
    overall accuracy, kappa, per-class precision/recall/F1/IoU and the confusion matrix.

    \b
    s2pipe evaluate landcover.tif --labels landcover.gpkg --split-from tiles/ -o report/
    """
    from s2pipe.evaluate import evaluate_map

    result = evaluate_map(prediction, reference, report_dir, layer=layer, class_field=class_field,
                          class_map=class_map, all_touched=all_touched, split_from=split_from,
                          area_adjusted=area_adjusted, overwrite=overwrite)
    report(result, as_json, result.files["metrics_md"].read_text() + f"\nReport: {result.report_dir}")


from s2pipe.quicklook import KINDS as QUICKLOOK_KINDS  # noqa: E402  (numpy only; valid values live once)


def _png_path(ctx: click.Context, param: click.Parameter, value: Path) -> Path:
    if value.suffix.lower() != ".png":
        raise click.BadParameter(f"{value} must end in .png", ctx, param)
    return value


@cli.command()
@click.argument("image", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", "out_png", required=True, type=click.Path(dir_okay=False, path_type=Path),
              callback=_png_path, help="PNG file to write.")
@click.option("--kind", type=click.Choice(QUICKLOOK_KINDS), default="auto", show_default=True,
              help="classes: a class map with its legend; rgb: a 12-band stack in true colour (B04/B03/B02).")
@click.option("--max-size", type=click.IntRange(16, 20000), default=1500, show_default=True,
              help="Longest side of the image in pixels; the raster is read decimated to fit.")
@click.option("--title", help="Legend title of a class map.")
@overwrite_option
@json_option
def quicklook(image: Path, out_png: Path, kind: str, max_size: int, title: str | None,
              overwrite: bool, as_json: bool) -> None:
    """A PNG quick-look of a class map (legend colours and legend) or a 12-band stack.

    \b
    s2pipe quicklook landcover.tif -o landcover.png
    """
    from s2pipe.quicklook import render_quicklook

    result = render_quicklook(image, out_png, kind=kind, max_size=max_size, title=title, overwrite=overwrite)
    report(result, as_json, str(result.path))


if __name__ == "__main__":
    main()
