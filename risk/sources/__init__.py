"""Everything that reads the outside world (PACS, EHR, Bulk exports).

Each source is a Protocol with a real and a file-backed implementation.
"""
