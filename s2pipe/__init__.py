"""s2pipe: Sentinel-2 L2A scenes to land-cover maps."""

__version__ = "0.1.0"
