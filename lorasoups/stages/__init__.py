"""The reproduction's stages, one function per notebook: each turns validated configs into runs
(through :mod:`lorasoups.training`, :mod:`lorasoups.merging`, :mod:`lorasoups.evaluation`) and
writes result JSON in the layout of ``results/README.md``. Notebooks call these and nothing else.
"""
