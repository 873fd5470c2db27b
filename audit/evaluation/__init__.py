"""The evaluator: data and model loading, the streaming evaluation loop, metrics and results assembly.

A peer of :mod:`policies` and :mod:`reports` (none of the three imports
another); it uses :mod:`stressors` and the contract (:mod:`audit.contract`)
below it. Heavy modules (torch) are imported by the submodules that need them.
"""
