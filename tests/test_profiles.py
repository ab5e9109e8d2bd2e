"""profiles: the GDAL settings s2pipe runs with."""

from __future__ import annotations

from s2pipe.raster.profiles import gdal_env


def test_cache_in_mb_reaches_gdal_in_bytes(monkeypatch):
    # rasterio passes an integer GDAL_CACHEMAX to GDALSetCacheMax64 as bytes: 256 would be a
    # 256-byte cache, under which a decimated read decodes every block again and again
    monkeypatch.delenv("GDAL_CACHEMAX", raising=False)
    assert gdal_env().options["GDAL_CACHEMAX"] == 256 * 2**20
    assert gdal_env(GDAL_CACHEMAX=4).options["GDAL_CACHEMAX"] == 4 * 2**20
    assert gdal_env(GDAL_CACHEMAX=300 * 2**20).options["GDAL_CACHEMAX"] == 300 * 2**20


def test_users_cache_setting_wins(monkeypatch):
    monkeypatch.setenv("GDAL_CACHEMAX", "64")
    assert "GDAL_CACHEMAX" not in gdal_env().options  # GDAL reads the variable itself, in MB
