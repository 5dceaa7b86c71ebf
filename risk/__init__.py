"""Lung-cancer risk stratification service: DICOMweb + FHIR in; CDS Hooks, SMART app and worklist out."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lungrisk")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"

__all__ = ["__version__"]
