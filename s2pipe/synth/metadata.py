"""Metadata files of a Sentinel-2 L2A SAFE product: names, MTD_MSIL2A.xml, MTD_TL.xml.

Element names, nesting and namespaces follow real ESA products (PSD 14, see
``shared/s2-reference``): what GDAL's SENTINEL2 driver and s2pipe read is present and
consistent with the band files written; the long per-detector angle grids and spectral
response curves of real products are left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from s2pipe.sentinel2.facts import BAND_IDS, DEFAULT_OFFSET_N0400, has_offset
from s2pipe.synth.defaults import DEFAULT_SENSING

L2A_NS = "https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-2A.xsd"
TL_NS = "https://psd-14.sentinel2.eo.esa.int/PSD/S2_PDI_Level-2A_Tile_Metadata.xsd"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"

# bandId: physical band, native resolution, wavelength min, max, central (nm), solar irradiance
_SPECTRAL = (("B1", 60, 411, 456, 442.3, 1874.3), ("B2", 10, 456, 532, 492.3, 1959.75),
             ("B3", 10, 536, 582, 558.9, 1824.93), ("B4", 10, 646, 685, 664.9, 1512.79),
             ("B5", 20, 694, 714, 703.8, 1425.78), ("B6", 20, 731, 749, 739.1, 1291.13),
             ("B7", 20, 769, 797, 779.7, 1175.57), ("B8", 10, 760, 908, 832.9, 1041.28),
             ("B8A", 20, 848, 881, 864.0, 953.93), ("B9", 60, 932, 958, 943.2, 817.58),
             ("B10", 60, 1337, 1412, 1376.9, 365.41), ("B11", 20, 1539, 1682, 1610.4, 247.08),
             ("B12", 20, 2078, 2320, 2185.7, 87.75))
SCL_NAMES = ("SC_NODATA", "SC_SATURATED_DEFECTIVE", "SC_DARK_FEATURE_SHADOW", "SC_CLOUD_SHADOW",
             "SC_VEGETATION", "SC_NOT_VEGETATED", "SC_WATER", "SC_UNCLASSIFIED",
             "SC_CLOUD_MEDIUM_PROBA", "SC_CLOUD_HIGH_PROBA", "SC_THIN_CIRRUS", "SC_SNOW_ICE")
_QI_NAMES = ("NODATA_PIXEL_PERCENTAGE", "SATURATED_DEFECTIVE_PIXEL_PERCENTAGE",
             "DARK_FEATURES_PERCENTAGE", "CLOUD_SHADOW_PERCENTAGE", "VEGETATION_PERCENTAGE",
             "NOT_VEGETATED_PERCENTAGE", "WATER_PERCENTAGE", "UNCLASSIFIED_PERCENTAGE",
             "MEDIUM_PROBA_CLOUDS_PERCENTAGE", "HIGH_PROBA_CLOUDS_PERCENTAGE",
             "THIN_CIRRUS_PERCENTAGE", "SNOW_ICE_PERCENTAGE")


#: Sentinel-2B's orbits per repeat cycle and the cycle's days: a tile's relative orbit returns
#: every 10 days, 143 absolute orbits later.
ORBITS_PER_CYCLE, CYCLE_DAYS = 143, 10
#: When the 05.xx reprocessing made the offset products of acquisitions before it.
REPROCESSING = datetime(2023, 7, 14, 10, 25, 33)


@dataclass(frozen=True)
class ProductNames:
    """The names inside one product, derived from mission, times, orbit, tile and baseline."""

    mission: str = "S2B"
    sensing: datetime = DEFAULT_SENSING
    datastrip_start: datetime = datetime(2018, 6, 7, 9, 50, 30)
    generation: datetime = datetime(2018, 6, 7, 13, 2, 25)
    relative_orbit: int = 79
    absolute_orbit: int = 6617
    tile: str = "33UYS"
    baseline: str = "02.08"
    centre: str = "MTI_"

    @staticmethod
    def for_product(baseline: str, *, day: date | None = None, tile: str | None = None) -> ProductNames:
        """The names of a product of ``baseline`` sensed on ``day`` (default 2018-06-07) in ``tile``.

        Sensing keeps its time of day; the datastrip, the generation and the absolute
        orbit move with the date (143 orbits per 10 days), the relative orbit stays. An
        offset baseline (04.00 on) of an acquisition before the 2023 reprocessing was
        generated then, at another centre.
        """
        base = ProductNames()
        shift = timedelta(days=(day - base.sensing.date()).days if day else 0)
        generation, centre = base.generation + shift, base.centre
        if has_offset(baseline):
            generation, centre = max(generation, REPROCESSING), "ESRI"
        return ProductNames(sensing=base.sensing + shift, datastrip_start=base.datastrip_start + shift,
                            generation=generation,
                            absolute_orbit=base.absolute_orbit + round(shift.days * ORBITS_PER_CYCLE / CYCLE_DAYS),
                            tile=tile or base.tile, baseline=baseline, centre=centre)

    @property
    def n_code(self) -> str:
        return "N" + self.baseline.replace(".", "")

    @property
    def product(self) -> str:
        return (f"{self.mission}_MSIL2A_{self.sensing:%Y%m%dT%H%M%S}_{self.n_code}_R{self.relative_orbit:03d}"
                f"_T{self.tile}_{self.generation:%Y%m%dT%H%M%S}")

    @property
    def granule(self) -> str:
        return f"L2A_T{self.tile}_A{self.absolute_orbit:06d}_{self.datastrip_start:%Y%m%dT%H%M%S}"

    def mask_file(self, kind: str, res: int) -> str:
        """Path of a QI_DATA mask inside the SAFE, e.g. MSK_CLDPRB at 20 m."""
        return f"GRANULE/{self.granule}/QI_DATA/{kind}_{res}m.jp2"

    def band_file(self, band: str, res: int) -> str:
        """Path of a band file inside the SAFE, without the .jp2 extension (as in the MTD)."""
        return (f"GRANULE/{self.granule}/IMG_DATA/R{res}m/"
                f"T{self.tile}_{self.sensing:%Y%m%dT%H%M%S}_{band}_{res}m")

    @property
    def datastrip_id(self) -> str:
        return (f"{self.mission}_OPER_MSI_L2A_DS_{self.centre}_{self.generation:%Y%m%dT%H%M%S}"
                f"_S{self.datastrip_start:%Y%m%dT%H%M%S}_N{self.baseline}")

    @property
    def tile_id(self) -> str:
        return (f"{self.mission}_OPER_MSI_L2A_TL_{self.centre}_{self.generation:%Y%m%dT%H%M%S}"
                f"_A{self.absolute_orbit:06d}_T{self.tile}_N{self.baseline}")


def _num(v: float) -> str:
    """A coordinate as ESA writes it: an integer when whole, else every digit."""
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def iso_time(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _qi(percent: Sequence[float], indent: str) -> str:
    return "".join(f"{indent}<{name}>{p:.6f}</{name}>\n" for name, p in zip(_QI_NAMES, percent))


def mtd_msil2a(names: ProductNames, image_files: Sequence[str], footprint: Sequence[tuple[float, float]],
               scl_percent: Sequence[float]) -> str:
    """The product metadata ``MTD_MSIL2A.xml`` listing ``image_files`` (no extension)."""
    offset = has_offset(names.baseline)
    files = "".join(f"            <IMAGE_FILE>{f}</IMAGE_FILE>\n" for f in image_files)
    special = "".join(f"      <Special_Values>\n        <SPECIAL_VALUE_TEXT>{t}</SPECIAL_VALUE_TEXT>\n"
                      f"        <SPECIAL_VALUE_INDEX>{v}</SPECIAL_VALUE_INDEX>\n      </Special_Values>\n"
                      for t, v in (("NODATA", 0), ("SATURATED", 65535)))
    offsets = ("      <BOA_ADD_OFFSET_VALUES_LIST>\n" + "".join(
        f'        <BOA_ADD_OFFSET band_id="{i}">{DEFAULT_OFFSET_N0400}</BOA_ADD_OFFSET>\n'
        for i in range(len(BAND_IDS)))
        + "      </BOA_ADD_OFFSET_VALUES_LIST>\n") if offset else ""
    irradiance = "".join(f'          <SOLAR_IRRADIANCE bandId="{i}" unit="W/m²/µm">{s[5]}</SOLAR_IRRADIANCE>\n'
                         for i, s in enumerate(_SPECTRAL))
    spectral = "".join(
        f'        <Spectral_Information bandId="{i}" physicalBand="{s[0]}">\n'
        f"          <RESOLUTION>{s[1]}</RESOLUTION>\n          <Wavelength>\n"
        f'            <MIN unit="nm">{s[2]}</MIN>\n            <MAX unit="nm">{s[3]}</MAX>\n'
        f'            <CENTRAL unit="nm">{s[4]}</CENTRAL>\n          </Wavelength>\n'
        f"        </Spectral_Information>\n" for i, s in enumerate(_SPECTRAL))
    scl = "".join(f"        <Scene_Classification_ID>\n          <SCENE_CLASSIFICATION_TEXT>{t}"
                  f"</SCENE_CLASSIFICATION_TEXT>\n          <SCENE_CLASSIFICATION_INDEX>{i}"
                  f"</SCENE_CLASSIFICATION_INDEX>\n        </Scene_Classification_ID>\n"
                  for i, t in enumerate(SCL_NAMES))
    ring = list(footprint) + [footprint[0]]
    pos = " ".join(f"{lat!r} {lon!r}" for lon, lat in ring)
    doi = "      <PRODUCT_DOI>https://doi.org/10.5270/S2_-znk9xsj</PRODUCT_DOI>\n" if offset else ""
    cloud = scl_percent[8] + scl_percent[9] + scl_percent[10]
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<n1:Level-2A_User_Product xmlns:n1="{L2A_NS}" xmlns:xsi="{XSI_NS}" xsi:schemaLocation="{L2A_NS}">
  <n1:General_Info>
    <Product_Info>
      <PRODUCT_START_TIME>{iso_time(names.sensing)}</PRODUCT_START_TIME>
      <PRODUCT_STOP_TIME>{iso_time(names.sensing)}</PRODUCT_STOP_TIME>
      <PRODUCT_URI>{names.product}.SAFE</PRODUCT_URI>
      <PROCESSING_LEVEL>Level-2A</PROCESSING_LEVEL>
      <PRODUCT_TYPE>S2MSI2A</PRODUCT_TYPE>
      <PROCESSING_BASELINE>{names.baseline}</PROCESSING_BASELINE>
{doi}      <GENERATION_TIME>{names.generation:%Y-%m-%dT%H:%M:%S}.000000Z</GENERATION_TIME>
      <PREVIEW_IMAGE_URL>Not applicable</PREVIEW_IMAGE_URL>
      <PREVIEW_GEO_INFO>Not applicable</PREVIEW_GEO_INFO>
      <Datatake datatakeIdentifier="G{names.mission}_{names.sensing:%Y%m%dT%H%M%S}_{names.absolute_orbit:06d}_N{names.baseline}">
        <SPACECRAFT_NAME>Sentinel-{names.mission[1:]}</SPACECRAFT_NAME>
        <DATATAKE_TYPE>INS-NOBS</DATATAKE_TYPE>
        <DATATAKE_SENSING_START>{iso_time(names.sensing)}</DATATAKE_SENSING_START>
        <SENSING_ORBIT_NUMBER>{names.relative_orbit}</SENSING_ORBIT_NUMBER>
        <SENSING_ORBIT_DIRECTION>DESCENDING</SENSING_ORBIT_DIRECTION>
      </Datatake>
      <Query_Options completeSingleTile="true">
        <PRODUCT_FORMAT>SAFE_COMPACT</PRODUCT_FORMAT>
      </Query_Options>
      <Product_Organisation>
        <Granule_List>
          <Granule datastripIdentifier="{names.datastrip_id}" granuleIdentifier="{names.tile_id}" imageFormat="JPEG2000">
{files}          </Granule>
        </Granule_List>
      </Product_Organisation>
    </Product_Info>
    <Product_Image_Characteristics>
{special}      <Image_Display_Order>
        <RED_CHANNEL>3</RED_CHANNEL>
        <GREEN_CHANNEL>2</GREEN_CHANNEL>
        <BLUE_CHANNEL>1</BLUE_CHANNEL>
      </Image_Display_Order>
      <QUANTIFICATION_VALUES_LIST>
        <BOA_QUANTIFICATION_VALUE unit="none">10000</BOA_QUANTIFICATION_VALUE>
        <AOT_QUANTIFICATION_VALUE unit="none">1000.0</AOT_QUANTIFICATION_VALUE>
        <WVP_QUANTIFICATION_VALUE unit="cm">1000.0</WVP_QUANTIFICATION_VALUE>
      </QUANTIFICATION_VALUES_LIST>
{offsets}      <Reflectance_Conversion>
        <U>0.970954827875957</U>
        <Solar_Irradiance_List>
{irradiance}        </Solar_Irradiance_List>
      </Reflectance_Conversion>
      <Spectral_Information_List>
{spectral}      </Spectral_Information_List>
      <Scene_Classification_List>
{scl}      </Scene_Classification_List>
    </Product_Image_Characteristics>
  </n1:General_Info>
  <n1:Geometric_Info>
    <Product_Footprint>
      <Product_Footprint>
        <Global_Footprint>
          <EXT_POS_LIST>{pos} </EXT_POS_LIST>
        </Global_Footprint>
      </Product_Footprint>
      <RASTER_CS_TYPE>POINT</RASTER_CS_TYPE>
      <PIXEL_ORIGIN>1</PIXEL_ORIGIN>
    </Product_Footprint>
    <Coordinate_Reference_System>
      <GEO_TABLES version="1">EPSG</GEO_TABLES>
      <HORIZONTAL_CS_TYPE>GEOGRAPHIC</HORIZONTAL_CS_TYPE>
    </Coordinate_Reference_System>
  </n1:Geometric_Info>
  <n1:Auxiliary_Data_Info>
    <GIPP_List/>
    <PRODUCTION_DEM_TYPE>None</PRODUCTION_DEM_TYPE>
    <IERS_BULLETIN_FILENAME>None</IERS_BULLETIN_FILENAME>
    <ECMWF_DATA_REF>None</ECMWF_DATA_REF>
    <SNOW_CLIMATOLOGY_MAP>GlobalSnowMap.tiff</SNOW_CLIMATOLOGY_MAP>
    <ESACCI_WaterBodies_Map>ESACCI-LC-L4-WB-Map-150m-P13Y-2000-v4.0.tif</ESACCI_WaterBodies_Map>
    <ESACCI_LandCover_Map>ESACCI-LC-L4-LCCS-Map-300m-P1Y-2015-v2.0.7.tif</ESACCI_LandCover_Map>
    <ESACCI_SnowCondition_Map_Dir>ESACCI-LC-L4-Snow-Cond-500m-P13Y7D-2000-2012-v2.0</ESACCI_SnowCondition_Map_Dir>
  </n1:Auxiliary_Data_Info>
  <n1:Quality_Indicators_Info>
    <Cloud_Coverage_Assessment>{cloud:.6f}</Cloud_Coverage_Assessment>
    <Technical_Quality_Assessment>
      <DEGRADED_ANC_DATA_PERCENTAGE>0.0</DEGRADED_ANC_DATA_PERCENTAGE>
      <DEGRADED_MSI_DATA_PERCENTAGE>0</DEGRADED_MSI_DATA_PERCENTAGE>
    </Technical_Quality_Assessment>
    <Quality_Control_Checks>
      <Quality_Inspections>
        <quality_check checkType="FORMAT_CORRECTNESS">PASSED</quality_check>
        <quality_check checkType="GENERAL_QUALITY">PASSED</quality_check>
        <quality_check checkType="GEOMETRIC_QUALITY">PASSED</quality_check>
        <quality_check checkType="RADIOMETRIC_QUALITY">PASSED</quality_check>
        <quality_check checkType="SENSOR_QUALITY">PASSED</quality_check>
      </Quality_Inspections>
      <Failed_Inspections/>
    </Quality_Control_Checks>
    <Image_Content_QI>
{_qi(scl_percent, "      ")}    </Image_Content_QI>
  </n1:Quality_Indicators_Info>
</n1:Level-2A_User_Product>
"""


def mtd_tl(names: ProductNames, epsg: int, cs_name: str, ulx: float, uly: float,
           sizes: dict[int, int], scl_percent: Sequence[float], masks: Sequence[tuple[str, str]] = ()) -> str:
    """The granule metadata ``MTD_TL.xml``: CRS, per-resolution size and geoposition, angles, masks."""
    qi = "".join(f'      <MASK_FILENAME type="{kind}">{rel}</MASK_FILENAME>\n' for kind, rel in masks)
    size = "".join(f'      <Size resolution="{r}">\n        <NROWS>{n}</NROWS>\n        <NCOLS>{n}</NCOLS>\n'
                   f"      </Size>\n" for r, n in sizes.items())
    geo = "".join(f'      <Geoposition resolution="{r}">\n        <ULX>{_num(ulx)}</ULX>\n        <ULY>{_num(uly)}</ULY>\n'
                  f"        <XDIM>{r}</XDIM>\n        <YDIM>-{r}</YDIM>\n      </Geoposition>\n" for r in sizes)
    view = "".join(f'        <Mean_Viewing_Incidence_Angle bandId="{i}">\n'
                   f'          <ZENITH_ANGLE unit="deg">{5.1 + 0.02 * i:.4f}</ZENITH_ANGLE>\n'
                   f'          <AZIMUTH_ANGLE unit="deg">{104.3 - 0.3 * i:.4f}</AZIMUTH_ANGLE>\n'
                   f"        </Mean_Viewing_Incidence_Angle>\n" for i in range(len(BAND_IDS)))
    sensing = names.datastrip_start + timedelta(seconds=14.5)
    cloud = scl_percent[8] + scl_percent[9] + scl_percent[10]
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<n1:Level-2A_Tile_ID xmlns:n1="{TL_NS}" xmlns:xsi="{XSI_NS}" xsi:schemaLocation="{TL_NS}">
  <n1:General_Info>
    <L1C_TILE_ID metadataLevel="Brief">{names.tile_id.replace("L2A", "L1C")}</L1C_TILE_ID>
    <TILE_ID metadataLevel="Brief">{names.tile_id}</TILE_ID>
    <DATASTRIP_ID metadataLevel="Standard">{names.datastrip_id}</DATASTRIP_ID>
    <DOWNLINK_PRIORITY metadataLevel="Standard">NOMINAL</DOWNLINK_PRIORITY>
    <SENSING_TIME metadataLevel="Standard">{sensing:%Y-%m-%dT%H:%M:%S.%f}Z</SENSING_TIME>
    <Archiving_Info metadataLevel="Expertise">
      <ARCHIVING_CENTRE>{names.centre.strip("_")}</ARCHIVING_CENTRE>
      <ARCHIVING_TIME>{names.generation + timedelta(minutes=31):%Y-%m-%dT%H:%M:%S.%f}Z</ARCHIVING_TIME>
    </Archiving_Info>
  </n1:General_Info>
  <n1:Geometric_Info>
    <Tile_Geocoding metadataLevel="Brief">
      <HORIZONTAL_CS_NAME>{cs_name}</HORIZONTAL_CS_NAME>
      <HORIZONTAL_CS_CODE>EPSG:{epsg}</HORIZONTAL_CS_CODE>
{size}{geo}    </Tile_Geocoding>
    <Tile_Angles metadataLevel="Standard">
      <Mean_Sun_Angle>
        <ZENITH_ANGLE unit="deg">31.2519476103038</ZENITH_ANGLE>
        <AZIMUTH_ANGLE unit="deg">155.784137043459</AZIMUTH_ANGLE>
      </Mean_Sun_Angle>
      <Mean_Viewing_Incidence_Angle_List>
{view}      </Mean_Viewing_Incidence_Angle_List>
    </Tile_Angles>
  </n1:Geometric_Info>
  <n1:Quality_Indicators_Info metadataLevel="Standard">
    <Image_Content_QI>
      <CLOUDY_PIXEL_PERCENTAGE>{cloud:.6f}</CLOUDY_PIXEL_PERCENTAGE>
{_qi(scl_percent, "      ")}    </Image_Content_QI>
    <Pixel_Level_QI geometry="FULL_RESOLUTION">
{qi}    </Pixel_Level_QI>
  </n1:Quality_Indicators_Info>
</n1:Level-2A_Tile_ID>
"""
