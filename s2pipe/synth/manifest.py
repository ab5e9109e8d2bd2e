"""The XFDU ``manifest.safe`` of a synthetic SAFE product, listing the files already written."""

from __future__ import annotations

import hashlib
from pathlib import Path

from s2pipe.synth.metadata import ProductNames, iso_time


def manifest(safe_dir: Path, names: ProductNames) -> str:
    """An XFDU ``manifest.safe`` with size and MD5 of every file already in ``safe_dir``."""
    units, objects = [], []
    for path in sorted(p for p in safe_dir.rglob("*") if p.is_file() and p.name != "manifest.safe"):
        rel = path.relative_to(safe_dir).as_posix()
        oid = path.stem if "IMG_DATA" in rel else rel.replace("/", "_").replace(".", "_")
        mime = "text/xml" if path.suffix == ".xml" else "application/octet-stream"
        md5 = hashlib.md5(path.read_bytes()).hexdigest()
        units.append(f'      <xfdu:contentUnit ID="{oid}_Unit" unitType="Measurement Data Unit">\n'
                     f'        <dataObjectPointer dataObjectID="{oid}"/>\n      </xfdu:contentUnit>\n')
        objects.append(f'    <dataObject ID="{oid}">\n      <byteStream mimeType="{mime}" size="{path.stat().st_size}">\n'
                       f'        <fileLocation locatorType="URL" href="./{rel}"/>\n'
                       f'        <checksum checksumName="MD5">{md5}</checksum>\n      </byteStream>\n    </dataObject>\n')
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<xfdu:XFDU xmlns:gml="http://www.opengis.net/gml" xmlns:safe="http://www.esa.int/safe/sentinel/1.1" xmlns:xfdu="urn:ccsds:schema:xfdu:1" version="esa/safe/sentinel/1.1/sentinel-2/msi/archive_l2a_user_product">
  <informationPackageMap>
    <xfdu:contentUnit unitType="Product_Level-2A" textInfo="SENTINEL-2 MSI Level-2A User Product" pdiID="processing">
{"".join(units)}    </xfdu:contentUnit>
  </informationPackageMap>
  <metadataSection>
    <metadataObject ID="acquisitionPeriod" category="DMD" classification="DESCRIPTION">
      <metadataWrap mimeType="text/xml" vocabularyName="SAFE" textInfo="Acquisition Period">
        <xmlData>
          <safe:acquisitionPeriod>
            <safe:startTime>{iso_time(names.sensing)}</safe:startTime>
          </safe:acquisitionPeriod>
        </xmlData>
      </metadataWrap>
    </metadataObject>
    <metadataObject ID="platform" category="DMD" classification="DESCRIPTION">
      <metadataWrap mimeType="text/xml" vocabularyName="SAFE" textInfo="Platform Description">
        <xmlData>
          <safe:platform>
            <safe:nssdcIdentifier>{"2017-013A" if names.mission == "S2B" else "2015-028A"}</safe:nssdcIdentifier>
            <safe:familyName>SENTINEL</safe:familyName>
            <safe:number>{names.mission[1:]}</safe:number>
          </safe:platform>
        </xmlData>
      </metadataWrap>
    </metadataObject>
  </metadataSection>
  <dataObjectSection>
{"".join(objects)}  </dataObjectSection>
</xfdu:XFDU>
"""
