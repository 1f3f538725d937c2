"""A test lab of pump rigs on labgrid: an RFC 2217 bridge for virtual rigs, a labgrid driver and strategy, place reservation per pytest worker.

Modules that import labgrid (driver, places' environment) are only usable in the lab
environment (`scripts/bootstrap --lab` makes `.venv-lab`); `bridge` and `farm` need only pyserial
and run in the main `.venv` on the exporter host, next to the virtual rigs.
"""
