"""Products and outputs in object storage, against a real S3-compatible server (moto's
server mode) that the fixture starts on 127.0.0.1; skipped only if it cannot start."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner

from cli import cli
from s2pipe.errors import InputNotFoundError, OutputExistsError, RemoteError
from s2pipe.sentinel2.reader import ReadOptions, open_scene, product_info
from s2pipe.synth.stac import write_stac_item

from conftest import free_port, wait_for_port
from test_predict import make_checkpoint

BUCKET = "s2pipe-test"


@pytest.fixture(scope="module")
def s3():
    """(boto3 client, port) of a moto S3 server on 127.0.0.1 with GDAL pointed at it."""
    boto3 = pytest.importorskip("boto3")
    pytest.importorskip("moto.server")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not wait_for_port(proc, port, poll=0.2):
        proc.kill()
        pytest.skip("the local S3 server (moto) could not start")
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
           "AWS_S3_ENDPOINT": f"127.0.0.1:{port}", "AWS_HTTPS": "NO", "AWS_VIRTUAL_HOSTING": "FALSE",
           "GDAL_HTTP_MAX_RETRY": "0", "GDAL_HTTP_TIMEOUT": "10"}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client, port
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
def uploaded(s3, synth_n0509, tmp_path_factory):
    """The N0509 product as a zipped SAFE and as an Earth Search item of COGs in the bucket."""
    client, _ = s3
    root = tmp_path_factory.mktemp("remote")
    zip_path = root / f"{synth_n0509.safe_path.name[:-5]}.zip"
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_STORED) as z:
        for f in sorted(synth_n0509.safe_path.rglob("*")):
            z.write(f, f.relative_to(synth_n0509.safe_path.parent).as_posix())
    client.upload_file(str(zip_path), BUCKET, f"safe/{zip_path.name}")
    item = write_stac_item(synth_n0509.safe_path, root / "item", naming="earth-search")
    for f in item.parent.iterdir():
        client.upload_file(str(f), BUCKET, f"cogs/{f.name}")
    return {"zip": f"s3://{BUCKET}/safe/{zip_path.name}", "item": f"s3://{BUCKET}/cogs/{item.name}",
            "local_item": item}


def test_zipped_safe_and_stac_item_read_from_s3(uploaded, synth_n0509):
    with open_scene(synth_n0509.safe_path, ReadOptions(mask_scl=())) as s:
        ref = s.read()
    for key in ("zip", "item"):
        info = product_info(uploaded[key])
        assert info.baseline == "05.09" and not info.missing_bands, key
        assert all(f.startswith("/vsizip//vsis3/" if key == "zip" else "/vsis3/") for f in info.band_files.values())
        with open_scene(uploaded[key], ReadOptions(mask_scl=())) as scene:
            np.testing.assert_array_equal(scene.read(), ref, err_msg=key)


def test_predict_from_s3_to_s3_uploads_only_complete_outputs(s3, uploaded, tmp_path):
    client, _ = s3
    model = make_checkpoint(tmp_path / "m.pt")
    out = f"s3://{BUCKET}/maps/map.tif"
    r = CliRunner().invoke(cli, ["predict", uploaded["item"], "--model", str(model), "-o", out, "--overlap", "16",
                                 "--json"])
    assert r.exit_code == 0, r.output
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix="maps/")["Contents"]}
    assert keys == {"maps/map.tif", "maps/map.tif.aux.xml", "maps/map.qml"}
    assert '"output": "s3://s2pipe-test/maps/map.tif"' in r.output
    r = CliRunner().invoke(cli, ["predict", uploaded["item"], "--model", str(model), "-o", out, "--overlap", "16"])
    assert r.exit_code == 1 and "already exists" in r.output
    # a failing run (a model that does not fit) leaves nothing in the bucket
    bad = make_checkpoint(tmp_path / "bad.pt", bands=("B02", "B03"))
    r = CliRunner().invoke(cli, ["predict", uploaded["item"], "--model", str(bad), "-o", f"s3://{BUCKET}/bad/x.tif"])
    assert r.exit_code == 1
    assert "Contents" not in client.list_objects_v2(Bucket=BUCKET, Prefix="bad/")


def test_missing_key_unreachable_host_and_existing_output_are_one_line_errors(s3, uploaded, monkeypatch):
    with pytest.raises(InputNotFoundError, match=f"s3://{BUCKET}/cogs/nope.json: not found"):
        product_info(f"s3://{BUCKET}/cogs/nope.json")
    r = CliRunner().invoke(cli, ["info", f"s3://{BUCKET}/cogs/nope.json"])
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1 and "check the URL" in r.output
    from s2pipe.remote import staged_outputs

    with pytest.raises(OutputExistsError), staged_outputs(uploaded["item"]):
        pass
    monkeypatch.setenv("AWS_S3_ENDPOINT", f"127.0.0.1:{free_port()}")
    with pytest.raises(RemoteError, match="unreachable .* AWS_S3_ENDPOINT"):
        product_info("s3://another-bucket/items/other.json")


def test_upload_failure_leaves_nothing(s3, tmp_path):
    client, _ = s3
    from s2pipe.remote import staged_outputs

    with pytest.raises(RuntimeError), staged_outputs(f"s3://{BUCKET}/half/map.tif") as (local,):
        local.write_bytes(b"partial")
        raise RuntimeError("the job failed")
    assert "Contents" not in client.list_objects_v2(Bucket=BUCKET, Prefix="half/")
    with (
        pytest.raises(RemoteError, match="cannot be written|access denied"),
        staged_outputs("s3://no-such-bucket-here/map.tif") as (local,),
    ):
        shutil.copy(__file__, local)
