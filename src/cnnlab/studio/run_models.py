"""The studio's loaded models: one per run, built on first use and kept while its best weights
are unchanged (a resumed run publishes new ones, and the next request loads them).

Each entry is serve's PredictionService around the run's Classifier, so predictions decode
uploads within the same decode memory budget and answer exactly as `cnnlab serve` and
`cnnlab predict` do; its lock serialises every model call (predictions, Grad-CAM, feature maps),
as serve's does. Only the most recently used runs stay loaded, so browsing many runs does not
keep every model in memory.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from cnnlab.errors import UserError

KEEP_LOADED = 2


class RunModels:
    def __init__(self, budget):
        self.budget = budget
        self.entries: OrderedDict = OrderedDict()  # run path -> (weights signature, service)
        self.lock = threading.Lock()

    def service(self, run):
        """The PredictionService of `run` (a cnnlab.runs.Run) at its current best weights."""
        from cnnlab.inference.classifier import load
        from cnnlab.serve.service import PredictionService

        if not run.has_weights():
            raise UserError(f"run {run.path.name!r} has no trained weights yet: train it for one epoch first")
        signature = run.weights_signature()
        key = str(run.path)
        with self.lock:
            entry = self.entries.get(key)
            if entry is not None and entry[0] == signature:
                self.entries.move_to_end(key)
                return entry[1]
        service = PredictionService(load(run.path), self.budget)  # outside the lock: loading takes seconds
        with self.lock:
            self.entries[key] = (signature, service)
            self.entries.move_to_end(key)
            while len(self.entries) > KEEP_LOADED:
                self.entries.popitem(last=False)
        return service

    def explainer(self, run):
        """(service, Explainer of its Keras model) for feature maps; Grad-CAM goes through the service."""
        from cnnlab.explain.introspect import Explainer

        service = self.service(run)
        with service.lock:
            if getattr(service, "studio_explainer", None) is None:
                service.studio_explainer = Explainer(service.classifier.keras_model())
            return service, service.studio_explainer
