"""dsf-py: a Python implementation of the Data Sharing Framework (DSF)."""

__version__ = "0.1.0"
