"""The package layering of docs/ARCHITECTURE.md, checked on the source: no package imports
one above it, and no module imports another module's private names."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "s2pipe"

#: Rank of each package (or top-level module) of s2pipe; a module may import modules of its
#: own package, of a lower rank, or of the base (rank 0). Kept in step with ARCHITECTURE.md.
LAYERS = {
    # base: errors, plain records, files and URLs; no raster or Sentinel-2 knowledge but the facts
    "s2pipe": 0, "errors": 0, "legend": 0, "outputs": 0, "provenance": 0, "remote": 0, "vsi": 0,
    "resources": 0, "class_presets": 0, "cluster": 0, "sentinel2.facts": 0,
    "raster": 1,                       # s2pipe's rasters: grids, profiles, COG writer, maps
    "sentinel2": 2, "labels": 2,       # products in, label vectors in
    "synth": 3, "tiles": 3,            # synthetic products; prepare's tiles
    "model": 4, "evaluation": 4, "mosaic": 4,
    "training": 5, "prediction": 5,
    "export": 6,                       # needs a model, training's tiles and prediction's runtime
    "change": 6,                       # reads maps; area estimation from evaluation
    "catalog": 6,                      # searches catalogues, describes maps as STAC
}


def _unit(module: str) -> str:
    """The LAYERS key of a dotted module name of s2pipe."""
    parts = module.split(".")
    if len(parts) == 1:
        return "s2pipe"
    if ".".join(parts[1:3]) in LAYERS:
        return ".".join(parts[1:3])
    return parts[1]


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out.append((name, path))
    return out


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, imported module, names) of every s2pipe import of a file, lazy ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.split(".")[0] == "s2pipe":
            found.append((node.lineno, node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name, []) for a in node.names if a.name.split(".")[0] == "s2pipe"]
    return sorted(found)


def test_every_package_has_a_layer():
    assert {_unit(name) for name, _ in _modules()} <= set(LAYERS), "add new packages to LAYERS and ARCHITECTURE.md"


def _violations(name: str, path: Path) -> list[str]:
    me = _unit(name)
    bad = []
    for line, module, names in _imports(path):
        target = module
        # "from s2pipe import x" and "from s2pipe.x import y" may name a module
        below = ROOT.joinpath(*module.split(".")[1:])
        if names and below.is_dir() and ((below / names[0]).is_dir() or (below / f"{names[0]}.py").is_file()):
            target = f"{module}.{names[0]}"
        other = _unit(target)
        if other != me and LAYERS[other] != 0 and LAYERS[other] >= LAYERS[me]:
            bad.append(f"line {line}: {me} (layer {LAYERS[me]}) imports {target} (layer {LAYERS[other]})")
        private = [n for n in names if n.startswith("_") and not n.startswith("__")]
        if private and module != name:
            bad.append(f"line {line}: private {private} of {module}")
    return bad


@pytest.mark.parametrize(("name", "path"), _modules(), ids=[n for n, _ in _modules()])
def test_no_import_from_above_and_no_private_names(name, path):
    bad = _violations(name, path)
    assert not bad, f"{path.relative_to(ROOT.parent)}: " + "; ".join(bad)


def test_the_check_sees_a_violation(tmp_path):
    """The check is not vacuous: upward, same-layer and private imports are caught; base and
    lower-layer imports pass."""
    src = tmp_path / "m.py"
    src.write_text("from s2pipe.prediction.predict import predict_scenes\n"
                   "def f():\n    from s2pipe.mosaic.mosaic import _x\n"
                   "from s2pipe import sentinel2\n"
                   "from s2pipe.errors import S2PipeError\nfrom s2pipe.sentinel2.facts import BANDS\n"
                   "from s2pipe.raster.maps import open_map\n")
    assert _violations("s2pipe.model.fake", src) == [
        "line 1: model (layer 4) imports s2pipe.prediction.predict (layer 5)",
        "line 3: model (layer 4) imports s2pipe.mosaic.mosaic (layer 4)",
        "line 3: private ['_x'] of s2pipe.mosaic.mosaic"]
    assert _violations("s2pipe.raster.fake", src) == [
        "line 1: raster (layer 1) imports s2pipe.prediction.predict (layer 5)",
        "line 3: raster (layer 1) imports s2pipe.mosaic.mosaic (layer 4)",
        "line 3: private ['_x'] of s2pipe.mosaic.mosaic",
        "line 4: raster (layer 1) imports s2pipe.sentinel2 (layer 2)"]
