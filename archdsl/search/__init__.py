"""Optuna-based architecture search over YAML design spaces (multi-objective: accuracy x throughput).

Public API::

    run_search(SearchOptions(...) | **options) -> dict      # archdsl.search.runner
    load_space(path) -> SearchSpace; SearchSpace.sample(trial) -> (spec_dict, train_overrides)
    default_space_path() -> Path                             # the space `archdsl search` uses by default
    pareto_front(trials, directions), export_results(study, out_dir, objectives)
"""
from archdsl.search.space import Param, SearchSpace, default_space_path, load_space

__all__ = ["Param", "SearchSpace", "default_space_path", "load_space", "run_search", "SearchOptions",
           "pareto_front", "export_results"]


def __getattr__(name: str):   # lazy: optuna/torch are imported only when a search runs
    if name in ("run_search", "SearchOptions"):
        from archdsl.search import runner

        return getattr(runner, name)
    if name in ("pareto_front", "export_results"):
        from archdsl.search import results

        return getattr(results, name)
    raise AttributeError(name)
