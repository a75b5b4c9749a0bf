"""Merge sweeps at GPU speed: the paper's TIES/DARE grid (λ x α1 x α2), each point merged in place
into one preallocated PEFT adapter (peft's own merge functions), decoded with
:mod:`lorasoups.evaluation.fastgen`, scored on CPU workers while the next point decodes, streamed to
``results/<profile>/sweep/<setting>/<method>--s<seed>.jsonl`` and resumable.

* ``grid``     the axes and points (:func:`points`, :class:`GridConfig`)
* ``inplace``  :class:`InPlaceMerger`: skills stacked on the device, ``apply(method, alphas, density)``
* ``engine``   :func:`run_sweep`, :func:`best_point`, :func:`best_params`, :func:`sweep_path`
"""
from lorasoups.sweep.engine import (
    DEFAULT_METRIC,
    SweepConfig,
    best_params,
    best_point,
    read_sweep,
    run_sweep,
    sweep_path,
)
from lorasoups.sweep.grid import DENSITY_METHODS, SWEEP_METHODS, GridConfig, point_key, points
from lorasoups.sweep.inplace import InPlaceMerger

__all__ = [
    "DEFAULT_METRIC", "DENSITY_METHODS", "GridConfig", "InPlaceMerger", "SWEEP_METHODS", "SweepConfig",
    "best_params", "best_point", "point_key", "points", "read_sweep", "run_sweep", "sweep_path",
]
