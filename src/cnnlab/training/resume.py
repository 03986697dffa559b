"""What `--resume` may change: nothing about the run but its length.

A resumed run continues exactly as it was configured. Settings given again with --resume must
match the stored ones (a different model, learning rate or seed is refused in one line, never
silently ignored); settings left out mean "as stored". `--epochs N` beyond the stored number
extends the run, optimizer state included, when its learning rate does not depend on the total:
a constant learning rate goes on as it was. A warm-up/decay schedule was laid over the stored
number of epochs and has reached its end (cosine and linear decay to 0), so extending it would
either restart it or train at 0: that is refused, with the way to start a new run from the
trained weights.
"""

from __future__ import annotations

import dataclasses

from cnnlab.errors import UserError
from cnnlab.runs import TrainConfig

# Where the caller's value is taken as is: the data and the run folder move with the user.
WHERE_NOT_WHAT = ("cache", "out", "photos")


def continued_config(stored: TrainConfig, requested: TrainConfig, state: dict, run_path) -> tuple[TrainConfig, dict]:
    """(the configuration to continue with, the state to continue from)."""
    defaults = TrainConfig(model=requested.model, cache=requested.cache, out=requested.out)
    conflicts = []
    for field in dataclasses.fields(TrainConfig):
        name = field.name
        if name in WHERE_NOT_WHAT or name == "epochs":
            continue
        given, kept = getattr(requested, name), getattr(stored, name)
        explicitly_given = name == "model" or given != getattr(defaults, name)
        if explicitly_given and given != kept:
            conflicts.append(f"{name} {kept!r} (asked: {given!r})")
    if conflicts:
        raise UserError(f"{run_path} was trained with {', '.join(conflicts)}; --resume continues a run as it was "
                        "configured: leave those options out, or start a new run with another --out")
    config = dataclasses.replace(stored, cache=requested.cache, out=requested.out,
                                 photos=requested.photos or stored.photos)
    stored_epochs = stored.recipe().epochs
    if requested.epochs is None or requested.epochs == stored_epochs:
        return config, state
    done = state.get("epochs_done", 0)
    if requested.epochs < done:
        raise UserError(f"{run_path} has already trained {done} epochs; --epochs {requested.epochs} cannot undo them "
                        f"(its best weights are from epoch {state.get('best_epoch')})")
    recipe = stored.recipe()
    if recipe.schedule != "constant":
        raise UserError(f"{run_path}'s learning rate follows a {recipe.schedule} schedule over its {stored_epochs} epochs; "
                        f"--epochs {requested.epochs} cannot extend it. Start a new run from its weights: "
                        f"cnnlab train {stored.model} --init-weights {run_path}/best.weights.h5 --epochs N --out NEW")
    state = dict(state)
    state.pop("finished", None)
    state.pop("stopped_early", None)
    return dataclasses.replace(config, epochs=requested.epochs), state
