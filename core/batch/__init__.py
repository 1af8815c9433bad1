"""Cohort scale: ``lungai batch`` runs many scans on Dask and writes cohort tables."""
