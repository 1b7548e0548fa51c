"""The interface every hrnn recommender shares (HRNN and the baselines)."""
from __future__ import annotations

import inspect


class Recommender:
    """Base class holding the API contract.

    A recommender is built with its hyperparameters only (validated at once), learns from an
    interactions table with ``fit``, answers ``recommend(user_id)`` with ``(item_ids, scores)``
    arrays best first, and takes real-time events with ``put_events``.
    Hyperparameters follow the scikit-learn convention: every ``__init__`` argument is stored on
    an attribute of the same name, so ``get_params`` / ``set_params`` / ``clone`` work.
    """

    def _validate_params(self) -> None:
        """Raise ValueError / TypeError naming a hyperparameter that is out of range."""

    @classmethod
    def _param_names(cls) -> list:
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values()
                if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]

    def get_params(self, deep: bool = True) -> dict:
        """The hyperparameters, as given to ``__init__``."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params) -> "Recommender":
        """Set hyperparameters by name (validated; nothing changes if one is invalid)."""
        names = set(self._param_names())
        unknown = sorted(set(params) - names)
        if unknown:
            raise ValueError(f"unknown hyperparameter(s) {unknown} for {type(self).__name__}; "
                             f"valid: {sorted(names)}")
        old = self.get_params()
        for k, v in params.items():
            setattr(self, k, v)
        try:
            self._validate_params()
        except Exception:
            for k, v in old.items():
                setattr(self, k, v)
            raise
        return self

    def clone(self) -> "Recommender":
        """A new, unfitted recommender with the same hyperparameters."""
        return type(self)(**self.get_params())

    def _check_fitted(self) -> None:
        """RuntimeError unless fitted."""
        raise NotImplementedError

    def __getstate__(self) -> dict:
        """An unfitted recommender pickles (and copies) as its hyperparameters; a fitted one does
        not: its native state would be lost or shared between the copies."""
        try:
            self._check_fitted()
        except RuntimeError:
            state = self.__dict__.copy()
            state.pop("_fitting", None)  # (a copy taken during fit is not being fitted)
            return state
        raise TypeError(f"a fitted {type(self).__name__} cannot be pickled or copied: hrnn writes no "
                        f"pickles (HRNN.save() and hrnn.load() write and read model files), and "
                        f"clone() gives an unfitted copy to fit")

    def __repr__(self) -> str:
        sig = inspect.signature(type(self).__init__)
        shown = [f"{k}={v!r}" for k, v in self.get_params().items()
                 if sig.parameters[k].default is inspect.Parameter.empty
                 or sig.parameters[k].default != v]
        return f"{type(self).__name__}({', '.join(shown)})"
