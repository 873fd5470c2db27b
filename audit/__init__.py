"""cvaudit's orchestration: config, data and model loading, the evaluator, the CLI, the pytest plugin.

Heavy modules (torch) are imported lazily by the submodules that need them, so
``import audit`` stays cheap for the pytest plugin.
"""
