"""Merge sweeps at GPU speed: the paper's TIES/DARE grid (λ x α1 x α2), each point merged in place
into one preallocated PEFT adapter (peft's own merge functions), decoded with
:mod:`lorasoups.evaluation.fastgen`, scored on CPU workers while the next point decodes, streamed to
``results/<profile>/sweep/<setting>/<method>--s<seed>.jsonl`` and resumable.

* ``grid``     the axes and points (:func:`points`, :class:`GridConfig`)
* ``inplace``  :class:`InPlaceMerger`: skills stacked on the device, ``apply(method, alphas, density)``
* ``engine``   :func:`run_sweep`, :func:`best_point`, :func:`best_params`, :func:`sweep_path`
"""
from lorasoups.sweep.engine import (
    SweepConfig,
    best_params,
    best_point,
    read_sweep,
    run_sweep,
    sweep_path,
)
from lorasoups.sweep.grid import GridConfig, has_density, point_key, points, sweep_methods
from lorasoups.sweep.inplace import InPlaceMerger

__all__ = [
    "GridConfig", "InPlaceMerger", "SweepConfig", "best_params", "best_point", "has_density",
    "point_key", "points", "read_sweep", "run_sweep", "sweep_methods", "sweep_path",
]
