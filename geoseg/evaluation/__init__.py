"""Scoring models and runs against labels: ``evaluate`` (``geoseg evaluate``) and ``metrics``."""
