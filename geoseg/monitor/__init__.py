"""Scheduled monitoring (``geoseg monitor``): a workflow's new scenes, clipped to an area of interest, run
and compared with the previous date, with a growing history (GeoPackage, time series, STAC catalog)."""

from geoseg.monitor.config import MonitorWorkflow, MonitorWorkflowError, load_monitor_workflow
from geoseg.monitor.core import MonitorSummary, run_monitor
from geoseg.monitor.state import MonitorBusyError

__all__ = [
    "MonitorBusyError",
    "MonitorSummary",
    "MonitorWorkflow",
    "MonitorWorkflowError",
    "load_monitor_workflow",
    "run_monitor",
]
