"""Fit the classifier of a frozen backbone in one pass: features once, then logistic regression.

A model whose layers are all frozen but its output layer is a linear classifier on the
backbone's features (efficientnet-lite0-linear: 1,280 ImageNet features). Gradient descent
would run the whole backbone forward on every photo in every epoch to fit those few weights;
here the backbone runs once per photo (training and validation), scikit-learn's logistic
regression fits the head on the features, and its coefficients become the output layer's
weights. sigmoid(w . x + b) (two classes) and softmax(W x + b) (more) are exactly what
LogisticRegression.predict_proba computes, so the run folder's model predicts what the fitted
regression predicts, and everything downstream (evaluate, predict, export, serve) is unchanged.

The regularisation strength C is chosen on the validation photos among REGULARISATION_GRID;
evaluation then scores the untouched test split. The fit is recorded as one epoch (its train
and validation loss, mean squared error and accuracy), like any run's.
"""

from __future__ import annotations

import math
import time

import numpy as np

from cnnlab.backend import keras, no_gradient
from cnnlab.errors import UserError
from cnnlab.models.activations import inference_batch_size
from cnnlab.progress import Progress

# LogisticRegression's C (inverse regularisation), tried from strong to weak. On the shared photos'
# 1,280 Lite0 features C = 1 won at 160 px (benchmarks/pretrained.py).
REGULARISATION_GRID = (0.1, 1.0, 10.0)
MAXIMUM_ITERATIONS = 3000  # lbfgs; the features are bounded (ReLU6 averages), it converges in far fewer
OUTPUT_LAYER = "output"  # cnnlab.models.classification_head's name


def trains_only_head(model) -> bool:
    """True when the output layer holds every trainable weight (a frozen backbone's head)."""
    head = model.get_layer(OUTPUT_LAYER)
    return not any(layer.trainable_weights for layer in model.layers if layer is not head)


def feature_extractor(model, frozen: bool = True, inputs=None):
    """The model up to its output layer's input (from `inputs`, a tensor of the model: default its
    input). frozen: refuse a model that trains anything else (a fine-tuned model's head is probed on
    the features its layers give before fine-tuning)."""
    head = model.get_layer(OUTPUT_LAYER)
    others = [weight for layer in model.layers if layer is not head for weight in layer.trainable_weights]
    if others and frozen:
        count = sum(math.prod(weight.shape) for weight in others)
        raise UserError(f"head_fit 'logistic' fits the output layer of a frozen backbone, but {model.name} trains "
                        f"{count:,} weights outside it; use head_fit 'gradient' (or efficientnet-lite0-linear)")
    return keras.Model(model.input if inputs is None else inputs, head.input), head


def forward_in_pieces(model, batches, description: str, stream=None, live: bool | None = None):
    """Yields each batch's model outputs (NumPy, in inference mode, without a gradient graph, run in
    pieces whose layer outputs fit cnnlab.models.activations' budget) and its encoded labels, with a
    progress bar over the batches' rows (none when live is False: the stream then gets the epoch's
    line only, as for every model)."""
    progress = Progress(len(batches.rows), description, stream=stream, live=live, leave=False) if live is not False \
        else None
    piece = inference_batch_size(model)
    try:
        for index in range(len(batches)):
            inputs, encoded = batches[index]
            with no_gradient():
                outputs = [keras.ops.convert_to_numpy(model(inputs[start:start + piece], training=False))
                           for start in range(0, len(inputs), piece)]
            yield np.concatenate(outputs), encoded
            if progress is not None:
                progress.update(len(encoded))
    finally:
        if progress is not None:
            progress.close()


def _features(extractor, batches, description: str, stream, live) -> tuple[np.ndarray, np.ndarray]:
    """Features and integer labels of every batch."""
    features, labels = [], []
    for outputs, encoded in forward_in_pieces(extractor, batches, description, stream, live):
        features.append(np.asarray(outputs, np.float64))
        labels.append(encoded[:, 0].astype(int) if encoded.shape[1] == 1 else encoded.argmax(axis=1))
    return np.concatenate(features), np.concatenate(labels)


def _scores(fitted, features: np.ndarray, labels: np.ndarray, num_classes: int) -> dict:
    """Cross-entropy, mean squared error and accuracy, as the trainer's metrics name them."""
    from sklearn.metrics import log_loss

    probabilities = fitted.predict_proba(features)
    classes = list(range(num_classes))
    if num_classes == 2:
        squared = (probabilities[:, 1] - labels) ** 2
    else:
        squared = ((probabilities - np.eye(num_classes)[labels]) ** 2).mean(axis=1)
    return {"loss": float(log_loss(labels, probabilities, labels=classes)), "mse": float(squared.mean()),
            "accuracy": float(np.mean(probabilities.argmax(axis=1) == labels))}


def fit_logistic_head(model, train_batches, val_batches, num_classes: int, seed: int, stream=None,
                      live: bool | None = None, frozen: bool = True, inputs=None) -> tuple[dict, float]:
    """Fit model's output layer on the features below it and set its weights. Returns the fit's
    logs (Keras' names: loss, mse, accuracy, val_...) and the C chosen on validation. frozen:
    the model must train nothing but its head (False: the head of a model about to be fine-tuned).
    inputs: the model's tensor that the batches feed (default: its input)."""
    from sklearn.linear_model import LogisticRegression

    extractor, head = feature_extractor(model, frozen, inputs)
    train_features, train_labels = _features(extractor, train_batches, "features (training)", stream, live)
    val_features, val_labels = _features(extractor, val_batches, "features (validation)", stream, live)
    missing = sorted(set(range(num_classes)) - set(train_labels.tolist()))
    if missing:
        raise UserError(f"the training photos hold no example of class(es) {missing}: a classifier cannot be fitted")
    fitted_by_strength = {}
    for strength in REGULARISATION_GRID:
        fitted = LogisticRegression(C=strength, max_iter=MAXIMUM_ITERATIONS, random_state=seed)
        fitted.fit(train_features, train_labels)
        score = _scores(fitted, val_features, val_labels, num_classes) if len(val_labels) else None
        fitted_by_strength[strength] = (fitted, score)
    # The lowest validation loss (not accuracy: it ties often on a few hundred photos).
    chosen = min(REGULARISATION_GRID, key=lambda strength: (fitted_by_strength[strength][1] or {"loss": 0})["loss"]) \
        if len(val_labels) else 1.0
    fitted, validation = fitted_by_strength[chosen]
    kernel, bias = fitted.coef_.T, fitted.intercept_
    if num_classes == 2:  # one sigmoid unit: P(class 1) = sigmoid(coef . x + intercept)
        kernel, bias = kernel[:, :1], bias[:1]
    head.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
    logs = _scores(fitted, train_features, train_labels, num_classes)
    if validation is not None:
        logs.update({f"val_{name}": value for name, value in validation.items()})
    return logs, chosen


def probe_head(model, train_batches, val_batches, num_classes: int, seed: int, state: dict, stream, live,
               inputs=None) -> None:
    """head_fit 'logistic' before fine-tuning: the output layer starts as the logistic regression
    fitted on the features the model gives before its first epoch (linear probing, then
    fine-tuning). Recorded in the state that the first epoch commits."""
    started = time.perf_counter()
    logs, strength = fit_logistic_head(model, train_batches, val_batches, num_classes, seed, stream=stream, live=live,
                                       frozen=False, inputs=inputs)
    state["head_fit"] = {"method": "logistic regression on the features before fine-tuning", "regularisation_C": strength,
                         "seconds": round(time.perf_counter() - started, 3),
                         **{name: round(value, 6) for name, value in logs.items()}}


def fit_head_as_one_epoch(model, train_batches, val_batches, num_classes: int, seed: int, state: dict,
                          callbacks: list, stream, live) -> None:
    """head_fit 'logistic' on a frozen backbone: the output layer fitted on features computed once,
    then committed as the run's one epoch by the same callbacks
    (EpochCommit writes the checkpoint, the best weights and metrics.jsonl; the logs mirror it)."""
    callback_list = keras.callbacks.CallbackList(callbacks, model=model)
    callback_list.on_train_begin()
    callback_list.on_epoch_begin(0)
    started = time.perf_counter()
    epoch_logs, strength = fit_logistic_head(model, train_batches, val_batches, num_classes, seed, stream=stream,
                                             live=live)
    # Read by EpochCommit, which commits a copy of this state with the epoch.
    state["head_fit"] = {"method": "logistic regression on frozen features", "regularisation_C": strength,
                         "seconds": round(time.perf_counter() - started, 3)}
    callback_list.on_epoch_end(0, epoch_logs)
    callback_list.on_train_end()
