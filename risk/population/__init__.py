"""Population scoring from FHIR Bulk Data, the coordinator worklist that closes the loop, and the registry export.

Modules (each has its own documentation):

* :mod:`~risk.population.bulk_export` — the Bulk Data ``$export`` client (SMART Backend Services token).
* :mod:`~risk.population.frames` — what is decoded from the export besides the feature table.
* :mod:`~risk.population.rules` — risk.assess's patient-level rules as polars expressions (eligibility, PLCOm2012,
  chest CT, annual screening window), checked equal to the one-patient functions.
* :mod:`~risk.population.nodules` — tracked nodules through the online code path (risk.extract + risk.imaging
  tracking + risk.assess), cached per patient by input digest.
* :mod:`~risk.population.scoring` — one result row per patient; :mod:`~risk.population.engines` — polars or Dask.
* :mod:`~risk.population.items`, :mod:`~risk.population.closed_loop`, :mod:`~risk.population.actions` — worklist
  items, their loop states and coordinator actions.
* :mod:`~risk.population.worklist` — queues, priority, filters, pages, CSV; :mod:`~risk.population.dashboard` —
  counts, adherence, uptake, trends; :mod:`~risk.population.registry` — the LCSR-style CSV.
* :mod:`~risk.population.runs` — one run end to end with its run record; :mod:`~risk.population.web` and
  :mod:`~risk.population.access` — the coordinator pages under ``/worklist`` and sign-in.
"""
