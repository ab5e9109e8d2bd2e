"""Many per-scene maps in, one seamless land-cover mosaic out."""
