"""The model registry, the tutorial's architectures and the non-neural baselines."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cnnlab.backend import configure_keras

configure_keras()

import keras  # noqa: E402

from cnnlab import models  # noqa: E402

TUTORIAL_MODELS = ["mlp", "conv1", "conv2", "conv2-wide", "conv2-fc512"]
MODERN_MODELS = ["resnet9", "resnet9-tiny"]
TRANSFER_MODELS = ["mobilenetv3-transfer"]  # family "modern" too; its own tests: test_transfer.py
# Family "modern" too; their ImageNet weights and conversion: test_pretrained.py.
EFFICIENTNET_MODELS = ["efficientnet-lite0-transfer", "efficientnet-lite0-linear", "efficientnet-lite0-linear-128"]
FROZEN_BACKBONE_MODELS = ["efficientnet-lite0-linear", "efficientnet-lite0-linear-128"]  # only the head trains
PARTLY_FROZEN_MODELS = ["efficientnet-lite0-transfer"]  # the last stage and the head train
INPUT_SHAPE = (3, 125, 94)  # channels_first: 3 channels, 125 tall, 94 wide

# Parameter counts worked out by hand from the tutorial's layers. A 3x3 'valid' convolution
# takes 125 x 94 to 123 x 92, 2x2 pooling to 61 x 46; a second convolution gives 59 x 44,
# pooling 29 x 22. Each layer: weights + biases.
EXPECTED_PARAMETERS = {
    "mlp": (125 * 94 * 3 * 512 + 512) + (512 * 1 + 1),
    "conv1": (3 * 3 * 3 * 24 + 24) + (61 * 46 * 24 * 128 + 128) + (128 * 128 + 128) + (128 + 1),
    "conv2": (3 * 3 * 3 * 48 + 48) + (3 * 3 * 48 * 48 + 48) + (29 * 22 * 48 * 256 + 256)
    + (256 * 256 + 256) + (256 + 1),
    "conv2-wide": (3 * 3 * 3 * 128 + 128) + (3 * 3 * 128 * 128 + 128) + (29 * 22 * 128 * 256 + 256)
    + (256 * 256 + 256) + (256 + 1),
    "conv2-fc512": (3 * 3 * 3 * 64 + 64) + (3 * 3 * 64 * 128 + 128) + (29 * 22 * 128 * 512 + 512)
    + (512 * 512 + 512) + (512 + 1),
    # The modern models' 3x3 convolutions have no bias; each batch norm holds 4 per channel
    # (scale, shift, moving mean, moving variance). Stem, stage 1 + its two-conv residual block,
    # stage 2, stage 3 + residual block, then the head on the globally pooled channels.
    "resnet9": (3 * 3 * 3 * 24 + 4 * 24) + (3 * 3 * 24 * 48 + 4 * 48) + 2 * (3 * 3 * 48 * 48 + 4 * 48)
    + (3 * 3 * 48 * 96 + 4 * 96) + (3 * 3 * 96 * 192 + 4 * 192) + 2 * (3 * 3 * 192 * 192 + 4 * 192) + (192 + 1),
    "resnet9-tiny": (3 * 3 * 3 * 16 + 4 * 16) + (3 * 3 * 16 * 32 + 4 * 32) + 2 * (3 * 3 * 32 * 32 + 4 * 32)
    + (3 * 3 * 32 * 64 + 4 * 64) + (3 * 3 * 64 * 128 + 4 * 128) + 2 * (3 * 3 * 128 * 128 + 4 * 128) + (128 + 1),
}
# Units feeding the output layer: a 3-class head has 3 x (units + 1) parameters instead of units + 1.
LAST_HIDDEN_UNITS = {"mlp": 512, "conv1": 128, "conv2": 256, "conv2-wide": 256, "conv2-fc512": 512,
                     "resnet9": 192, "resnet9-tiny": 128}

# Forward FLOPs = 2 x multiply-adds. A conv output element costs 3 x 3 x in_channels MACs;
# a dense output costs in_features MACs.
EXPECTED_FLOPS = {
    "mlp": 2 * (125 * 94 * 3 * 512 + 512 * 1),
    "conv1": 2 * (123 * 92 * 24 * (3 * 3 * 3) + 61 * 46 * 24 * 128 + 128 * 128 + 128 * 1),
    "conv2": 2 * (123 * 92 * 48 * (3 * 3 * 3) + 59 * 44 * 48 * (3 * 3 * 48) + 29 * 22 * 48 * 256
                  + 256 * 256 + 256 * 1),
    "conv2-wide": 2 * (123 * 92 * 128 * (3 * 3 * 3) + 59 * 44 * 128 * (3 * 3 * 128) + 29 * 22 * 128 * 256
                       + 256 * 256 + 256 * 1),
    "conv2-fc512": 2 * (123 * 92 * 64 * (3 * 3 * 3) + 59 * 44 * 128 * (3 * 3 * 64) + 29 * 22 * 128 * 512
                        + 512 * 512 + 512 * 1),
    # At the modern recipes' 64 x 64: the stem runs at 64 x 64, stages 1-3 (pooling first) at
    # 32 x 32, 16 x 16 and 8 x 8; 'same' convolutions keep the size.
    "resnet9": 2 * (64 * 64 * 24 * (3 * 3 * 3) + 32 * 32 * 48 * (3 * 3 * 24) + 2 * 32 * 32 * 48 * (3 * 3 * 48)
                    + 16 * 16 * 96 * (3 * 3 * 48) + 8 * 8 * 192 * (3 * 3 * 96) + 2 * 8 * 8 * 192 * (3 * 3 * 192)
                    + 192 * 1),
    "resnet9-tiny": 2 * (64 * 64 * 16 * (3 * 3 * 3) + 32 * 32 * 32 * (3 * 3 * 16) + 2 * 32 * 32 * 32 * (3 * 3 * 32)
                         + 16 * 16 * 64 * (3 * 3 * 32) + 8 * 8 * 128 * (3 * 3 * 64) + 2 * 8 * 8 * 128 * (3 * 3 * 128)
                         + 128 * 1),
}
MODERN_INPUT_SHAPE = (3, 64, 64)


@pytest.fixture(autouse=True)
def _seeded():
    keras.utils.set_random_seed(0)


def raw_pixels(count: int, seed: int = 0, shape=INPUT_SHAPE) -> np.ndarray:
    """Random photos as the tutorial feeds them: float32 0-255, channels_first."""
    return np.random.default_rng(seed).integers(0, 256, (count, *shape)).astype("float32")


def recipe_shape(name: str) -> tuple[int, int, int]:
    """The input shape a model is built with by default: its recipe's size."""
    if name in TRANSFER_MODELS:
        return (3, 128, 128)
    if name == "efficientnet-lite0-linear-128":
        return (3, 128, 128)
    if name in EFFICIENTNET_MODELS:
        return (3, 224, 224)  # the weights' resolution (fine-tuning affords it on stored trunk outputs)
    return INPUT_SHAPE if name in TUTORIAL_MODELS else MODERN_INPUT_SHAPE


# The transfer model's count comes from keras.applications itself (an independent oracle):
# the backbone without its classifier, plus a one-unit head on its 576 pooled features.
EXPECTED_PARAMETERS["mobilenetv3-transfer"] = keras.applications.MobileNetV3Small(
    input_shape=(3, 128, 128), include_top=False, weights=None, pooling="avg").count_params() + 576 + 1
LAST_HIDDEN_UNITS["mobilenetv3-transfer"] = 576


def efficientnet_lite0_parameters() -> int:
    """EfficientNet-Lite0 without its ImageNet classifier, from the paper's stage table (Tan & Le
    2019, Table 1; Lite: no squeeze-excitation, stem and head unscaled): (repeats, kernel, stride,
    expansion, input width, output width). Convolutions have no bias; each batch norm holds 4 per
    channel. The normalisation constants are not weights. The reference implementation's 4,652,008
    trainable parameters are this minus the batch norms' moving statistics plus its 1,281,000-weight
    ImageNet classifier (test_pretrained.py compares the two networks' outputs)."""
    stages = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
              (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]
    total = 3 * 3 * 3 * 32 + 4 * 32  # stem
    for repeats, kernel, _, expansion, width_in, width_out in stages:
        for repeat in range(repeats):
            inner = (width_in if repeat == 0 else width_out) * expansion
            if expansion != 1:
                total += (width_in if repeat == 0 else width_out) * inner + 4 * inner  # expand 1x1
            total += kernel * kernel * inner + 4 * inner + inner * width_out + 4 * width_out  # depthwise, project
    return total + 320 * 1280 + 4 * 1280  # head convolution


for _name in EFFICIENTNET_MODELS:
    EXPECTED_PARAMETERS[_name] = efficientnet_lite0_parameters() + 1280 + 1
    LAST_HIDDEN_UNITS[_name] = 1280


def test_registry_lists_the_tutorial_models_in_order():
    assert models.model_names() == TUTORIAL_MODELS + MODERN_MODELS + TRANSFER_MODELS + EFFICIENTNET_MODELS
    assert models.model_names("tutorial") == TUTORIAL_MODELS
    assert models.model_names("modern") == MODERN_MODELS + TRANSFER_MODELS + EFFICIENTNET_MODELS


@pytest.mark.parametrize("name", models.model_names())
def test_two_class_model_outputs_one_probability_per_image(name):
    model = models.build_model(name)
    assert keras.config.image_data_format() == "channels_first"
    assert tuple(model.input_shape) == (None, *recipe_shape(name))
    assert tuple(model.output_shape) == (None, 1)
    probabilities = np.asarray(model.predict_on_batch(raw_pixels(2, shape=recipe_shape(name)) / 255.0))
    assert probabilities.shape == (2, 1)
    assert np.all((probabilities >= 0) & (probabilities <= 1))


@pytest.mark.parametrize("name", models.model_names())
def test_three_class_model_outputs_softmax_rows(name):
    model = models.build_model(name, INPUT_SHAPE, num_classes=3)
    probabilities = np.asarray(model.predict_on_batch(raw_pixels(2) / 255.0))
    assert probabilities.shape == (2, 3)
    assert np.all((probabilities >= 0) & (probabilities <= 1))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    units = LAST_HIDDEN_UNITS[name]
    assert models.count_parameters(model) == EXPECTED_PARAMETERS[name] - (units + 1) + 3 * (units + 1)


@pytest.mark.parametrize("name", TUTORIAL_MODELS + MODERN_MODELS)
def test_parameter_count_and_flops_match_the_hand_computed_values(name):
    model = models.build_model(name)
    assert models.count_parameters(model) == EXPECTED_PARAMETERS[name]
    assert models.count_parameters(model) == model.count_params()
    assert models.forward_flops(model) == EXPECTED_FLOPS[name]


@pytest.mark.parametrize("name", EFFICIENTNET_MODELS)
def test_efficientnet_parameter_counts_and_what_trains(name):
    model = models.build_model(name)
    assert models.count_parameters(model) == EXPECTED_PARAMETERS[name] == 3_414_305
    trainable = models.count_parameters(model, trainable_only=True)
    if name in FROZEN_BACKBONE_MODELS:
        assert trainable == 1280 + 1
    else:
        # The convolutions of blocks 11-15 (the last stage at 192 wide, expansion 6, kernel 5,
        # then 192 -> 320 with kernel 3) and the head convolution, then the head; every batch
        # norm stays frozen.
        last_stage = (112 * 672 + 25 * 672 + 672 * 192) + 3 * (192 * 1152 + 25 * 1152 + 1152 * 192)
        block15 = 192 * 1152 + 9 * 1152 + 1152 * 320
        assert trainable == last_stage + block15 + 320 * 1280 + 1280 + 1
        assert not any(layer.trainable for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization))
    assert models.get_model_spec(name).init_weights == "imagenet-offline"
    # Stochastic depth only where layers train: a frozen block must give what inference gives.
    dropped = sorted(int(layer.name[5:].split("_")[0]) for layer in model.layers if layer.name.endswith("_drop"))
    assert dropped == ([] if name in FROZEN_BACKBONE_MODELS else [12, 13, 14])
    # Stock Keras layers only, so that a .keras file loads in plain Keras (test_pretrained.py).
    assert all(type(layer).__module__.startswith("keras.") for layer in model.layers)


def test_conv2_fc512_first_dense_layer_holds_over_40_million_parameters():
    model = models.build_model("conv2-fc512")
    assert model.get_layer("dense1").count_params() == 29 * 22 * 128 * 512 + 512 > 40_000_000


def test_tutorial_layers_read_well():
    model = models.build_model("conv2")
    names = [layer.name for layer in model.layers]
    assert names == ["image", "conv1", "pool1", "conv2", "pool2", "flatten", "dense1", "dense2", "output"]
    conv = model.get_layer("conv1")
    assert conv.kernel_size == (3, 3) and conv.padding == "valid" and conv.activation.__name__ == "relu"
    assert model.get_layer("pool1").pool_size == (2, 2)
    assert model.get_layer("output").activation.__name__ == "sigmoid"


def test_channels_last_image_is_rejected_by_a_channels_first_model():
    model = models.build_model("conv1")
    with pytest.raises(ValueError):
        model.predict_on_batch(np.zeros((1, 125, 94, 3), dtype="float32"))


@pytest.mark.parametrize("name", models.model_names())
def test_one_training_step_with_the_recipe_changes_the_weights(name):
    spec = models.get_model_spec(name)
    model = models.build_model(name)
    model.compile(optimizer=spec.recipe.make_optimizer(), loss=spec.recipe.make_loss(2))
    before = [weight.copy() for weight in model.get_weights()]
    # Unit-scaled pixels: on raw 0-255 pixels the tutorial's MLP sigmoid saturates at once and
    # MSE has no gradient there (its "random guessing"); the raw-pixel case is tested below.
    # A frozen backbone that is not pretrained here may give (near-)constant features, hence
    # P = 0.5 for every photo, and a balanced batch would then give the bias no gradient at all.
    frozen_layers = name in FROZEN_BACKBONE_MODELS + PARTLY_FROZEN_MODELS
    labels = [[0], [1], [1], [1]] if frozen_layers else [[0], [1], [0], [1]]
    loss = model.train_on_batch(raw_pixels(4, shape=recipe_shape(name)) / 255.0, np.array(labels, dtype="float32"))
    assert math.isfinite(float(loss))
    changed = [not np.array_equal(old, new) for old, new in zip(before, model.get_weights())]
    if not frozen_layers:
        assert all(changed), f"weights left unchanged: {changed}"
        return
    # Frozen layers stay exactly as they were (their batch norms' statistics too); the rest learn.
    frozen = {id(weight) for layer in model.layers if not layer.trainable for weight in layer.weights}
    if name in FROZEN_BACKBONE_MODELS:
        assert len(frozen) == len(model.weights) - 2  # all but the head's kernel and bias
    assert 0 < len(frozen) < len(model.weights)
    for weight, moved in zip(model.weights, changed):
        assert moved == (id(weight) not in frozen), weight.path


def test_conv1_learns_from_raw_pixels_although_its_sigmoid_starts_saturated():
    spec = models.get_model_spec("conv1")
    model = models.build_model("conv1")
    images, labels = raw_pixels(4), np.array([[0], [1], [0], [1]], dtype="float32")
    # The logits behind the sigmoid, computed independently from the last hidden layer.
    hidden = np.asarray(keras.Model(model.input, model.get_layer("dense2").output).predict_on_batch(images))
    kernel, bias = model.get_layer("output").get_weights()
    logits = hidden @ kernel + bias
    assert np.abs(logits).max() > -math.log(1e-7)  # beyond where a clipped probability has a gradient
    exact = np.mean(np.logaddexp(0, logits) - labels * logits)  # BCE from logits: softplus(z) - y z
    loss_function = spec.recipe.make_loss(2)
    assert float(keras.ops.convert_to_numpy(loss_function(labels, model(images)))) == pytest.approx(exact, rel=1e-4)

    model.compile(optimizer=spec.recipe.make_optimizer(), loss=loss_function)
    before = [weight.copy() for weight in model.get_weights()]
    assert float(model.train_on_batch(images, labels)) == pytest.approx(exact, rel=1e-4)
    assert all(not np.array_equal(old, new) for old, new in zip(before, model.get_weights()))


def test_cross_entropy_keeps_a_gradient_through_a_saturated_sigmoid():
    # Logit 100: the sigmoid is exactly 1.0 in float32. The exact loss for label 0 is
    # softplus(100) = 100; clipping the probability would give -ln(1e-7) = 16.1 and no gradient.
    inputs = keras.Input(shape=(1,))
    outputs = keras.layers.Dense(1, activation="sigmoid", kernel_initializer="ones",
                                 bias_initializer="zeros")(inputs)
    model = keras.Model(inputs, outputs)
    recipe = models.get_model_spec("conv1").recipe
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.01), loss=recipe.make_loss(2))
    loss = model.train_on_batch(np.array([[100.0]], dtype="float32"), np.array([[0.0]], dtype="float32"))
    assert float(loss) == pytest.approx(100.0, rel=1e-4)
    assert float(model.get_weights()[0][0, 0]) < 1.0


def test_three_class_loss_is_categorical_crossentropy_on_one_hot_labels():
    recipe = models.get_model_spec("conv1").recipe
    loss = recipe.make_loss(3)
    assert isinstance(loss, keras.losses.CategoricalCrossentropy)
    probabilities = np.array([[0.7, 0.2, 0.1]], dtype="float32")
    assert float(loss(np.array([[1.0, 0.0, 0.0]]), probabilities)) == pytest.approx(-math.log(0.7), rel=1e-5)


def test_recipes_are_the_tutorials():
    conv2 = models.get_model_spec("conv2")
    assert conv2.recipe.to_dict() == {
        "loss": "bce", "optimizer": "adam", "learning_rate": 1e-6, "batch_size": 64, "epochs": 15,
        "pixel_scale": "raw", "input_width": 94, "input_height": 125, "fit": "stretch",
        "weight_decay": 0.0, "label_smoothing": 0.0,
        # Added after the tutorial (issue 4); their defaults switch them off.
        "augment": None, "warmup_epochs": 0.0, "schedule": "constant", "ema": 0.0, "tta_flip": False,
        "precision": "float32", "head_fit": "gradient", "cache_frozen_layers": False,
    }
    assert conv2.tutorial == {"mse": 0.33, "pearson": 0.21, "accuracy": 0.61}
    mlp = models.get_model_spec("mlp").recipe
    assert (mlp.loss, mlp.learning_rate, mlp.batch_size) == ("mse", 1e-3, 32)
    assert models.get_model_spec("conv2-fc512").tutorial["accuracy"] == 0.75


def test_recipe_rejects_unknown_choices():
    with pytest.raises(ValueError, match="unknown loss"):
        models.Recipe(loss="hinge", optimizer="adam", learning_rate=1e-3, batch_size=32, epochs=1)
    with pytest.raises(ValueError, match="unknown optimizer"):
        models.Recipe(loss="bce", optimizer="rmsprop", learning_rate=1e-3, batch_size=32, epochs=1)
    with pytest.raises(ValueError, match="batch_size"):
        models.Recipe(loss="bce", optimizer="adam", learning_rate=1e-3, batch_size=0, epochs=1)


def test_unknown_model_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown model 'resnet9000'.*conv2-fc512"):
        models.get_model_spec("resnet9000")
    with pytest.raises(ValueError, match="unknown model"):
        models.build_model("resnet9000")


def test_duplicate_registration_is_refused_and_registration_can_be_undone():
    spec = models.get_model_spec("conv1")
    with pytest.raises(ValueError, match="already registered"):
        models.register(spec)
    extra = models.ModelSpec(name="test-extra", description="test", build=spec.build, recipe=spec.recipe,
                             family="modern")
    models.register(extra)
    try:
        assert models.model_names("modern") == MODERN_MODELS + TRANSFER_MODELS + EFFICIENTNET_MODELS + ["test-extra"]
    finally:
        models.unregister("test-extra")
    assert "test-extra" not in models.model_names()


def test_build_model_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_classes"):
        models.build_model("mlp", num_classes=1)
    with pytest.raises(ValueError, match="input_shape"):
        models.build_model("mlp", input_shape=(125, 94))


def test_flop_counters_cover_other_convolutions_and_refuse_unknown_kernels():
    inputs = keras.Input(shape=(4, 10, 10))
    x = keras.layers.DepthwiseConv2D(3, name="depthwise")(inputs)  # 4 x 8 x 8, 9 MACs each
    x = keras.layers.SeparableConv2D(6, 3, name="separable")(x)  # 6 x 6 x 6 positions
    x = keras.layers.Conv2DTranspose(2, 2, strides=2, name="transpose")(x)  # 6 x 6 x 6 inputs, 2 x 2 x 2 taps
    flops = dict(models.layer_flops(keras.Model(inputs, x)))
    assert flops == {
        "depthwise": 2 * (4 * 8 * 8 * 9),
        "separable": 2 * (6 * 6 * (4 * 9) + 6 * 6 * 4 * 6),
        "transpose": 2 * (6 * 6 * 6 * (2 * 2 * 2)),
    }

    class Mystery(keras.layers.Layer):
        def build(self, input_shape):
            self.kernel = self.add_weight(shape=(input_shape[-1], 2))

        def call(self, x):
            return keras.ops.matmul(x, self.kernel)

    vector = keras.Input(shape=(3,))
    with pytest.raises(ValueError, match="FLOP_COUNTERS"):
        models.forward_flops(keras.Model(vector, Mystery(name="mystery")(vector)))


def test_describe_models_is_json_ready():
    import json

    records = models.describe_models("tutorial")
    assert [record["name"] for record in records] == TUTORIAL_MODELS
    by_name = {record["name"]: record for record in records}
    assert by_name["conv1"]["parameters"] == EXPECTED_PARAMETERS["conv1"]
    assert by_name["mlp"]["forward_flops"] == EXPECTED_FLOPS["mlp"]
    assert by_name["conv2"]["recipe"]["epochs"] == 15
    assert json.loads(json.dumps(records)) == records


@pytest.mark.parametrize("name", models.model_names())
def test_registered_counts_are_the_built_models(name):
    """`cnnlab models` lists the counts registered with each spec instead of building every model:
    they must be what the model built at its recipe's size with two classes has."""
    spec = models.get_model_spec(name)
    model = models.build_model(name)
    assert spec.parameters == models.count_parameters(model)
    assert spec.forward_flops == models.forward_flops(model)


def test_a_spec_registered_without_counts_is_counted_on_a_build():
    spec = models.get_model_spec("conv1")
    extra = models.ModelSpec(name="test-uncounted", description="test", build=spec.build, recipe=spec.recipe)
    assert extra.parameters is None and extra.forward_flops is None
    models.register(extra)
    try:
        (record,) = [record for record in models.describe_models() if record["name"] == "test-uncounted"]
        assert (record["parameters"], record["forward_flops"]) == (EXPECTED_PARAMETERS["conv1"], EXPECTED_FLOPS["conv1"])
    finally:
        models.unregister("test-uncounted")
    with pytest.raises(ValueError, match="parameters"):
        models.ModelSpec(name="x", description="x", build=spec.build, recipe=spec.recipe, parameters=-1)


def test_listing_models_imports_no_keras_and_prints_the_registry():
    """`cnnlab models` answers from the registry alone: no Keras, backend, SciPy or Matplotlib."""
    import json
    import subprocess
    import sys

    code = ("import sys\nfrom cnnlab.cli import run\nrun(['models', '--format', 'json'])\n"
            "print(sorted(name for name in ('keras', 'torch', 'tensorflow', 'scipy', 'sklearn', 'matplotlib', 'numpy')"
            " if name in sys.modules), file=sys.stderr)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "[]"
    assert json.loads(result.stdout) == models.describe_models()
