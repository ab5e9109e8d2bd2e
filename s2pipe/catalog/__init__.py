"""From an area and a time span to the scenes that map it, and maps back into catalogues.

- :mod:`s2pipe.catalog.area`: the area of interest (any OGR format and CRS, or a lon/lat box).
- :mod:`s2pipe.catalog.catalogues`: the public STAC APIs known by name, any API by URL
  (pystac-client: paging, CQL2 filter, sort; retries with backoff), local folders of Items.
- :mod:`s2pipe.catalog.scenes`: what the choices need from an Item (tile, time, cloud, baseline).
- :mod:`s2pipe.catalog.choose`: duplicates, the best scenes of each tile, sliver tiles.
- :mod:`s2pipe.catalog.search`: ``s2pipe search``: all of the above, written as Items and a list.
- :mod:`s2pipe.catalog.publish`: a STAC Item describing a map s2pipe wrote.
"""
